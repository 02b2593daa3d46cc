"""A user reward function for tests that name one by import path ("user_reward:reward_spaces")."""

from __future__ import annotations


def reward_spaces(response: str, item) -> float:
    """A learnable user reward (train.reward_function): the share of spaces in the response."""
    return response.count(" ") / max(len(response), 1)
