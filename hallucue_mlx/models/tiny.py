"""Tiny randomly initialised VLMs in the real architectures, built offline in seconds.

No weights can be downloaded in tests or offline runs, so the project builds its own checkpoints:
a byte-level BPE tokenizer trained on a small corpus with the architecture's special tokens, the
architecture's image processor config, and mlx-vlm's own model class initialised from a seed. The
result loads with `mlx_vlm.load(dir)` exactly like a converted Hugging Face checkpoint.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

from hallucue_mlx.prompts import TEMPLATES, format_answer

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "idefics3")

# Special tokens in the order the real tokenizers list them (their ids follow the BPE vocabulary).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# SmolVLM (Idefics3): image splitting would use the <row_i_col_j> tags; the tiny model does not split.
IDEFICS3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)

# Qwen2-VL / Qwen2.5-VL's chat template (the image goes where the message content puts it).
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# SmolVLM's chat template ("User:<image>question<end_of_utterance>\nAssistant:").
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}"
    "{% endif %}{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Qwen2's pre-tokenizer split: digits one by one (good for arithmetic), words with a leading space.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_WORDS = (
    "the a an of in on at to is are what which how many much find value angle length area "
    "perimeter triangle circle square rectangle line segment point radius diameter degree "
    "degrees figure image picture shown below above left right top bottom bar bars chart "
    "plot graph tallest shortest largest smallest number numbers count objects shapes dots "
    "red green blue yellow black white orange purple gray colour color digit sum difference "
    "product total answer question choices option options choose correct following if then "
    "so therefore because first next finally step think reasoning final compute given "
    "equals equal each there here this that and or not with from by as it its be x y z "
    "height width side sides base parallel perpendicular measure units cm m"
).split()
_LATEX = (
    "\\frac{1}{2}",
    "\\sqrt{3}",
    "\\angle ABC",
    "\\triangle ABC",
    "\\pi",
    "\\times",
    "\\cdot",
    "^\\circ",
    "x^2",
    "\\le",
    "\\ge",
    "\\neq",
    "$",
)


def default_corpus(n_lines: int = 3000) -> list[str]:
    """Generic math / visual-question English with digits, LaTeX and the answer format.

    Fixed (not seeded by the model seed) so that every tiny model of a family shares one tokenizer.
    """
    rng = random.Random(1234)
    lines: list[str] = list(TEMPLATES.values())
    for i in range(n_lines):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        num = str(rng.randint(0, 999))
        latex = rng.choice(_LATEX)
        kind = i % 4
        if kind == 0:
            lines.append(f"{words.capitalize()} {num}? {latex}")
        elif kind == 1:
            opts = " ".join(f"{L}. {rng.randint(0, 99)}" for L in "ABCD")
            lines.append(f"{words.capitalize()}?\nChoices:\n{opts}")
        elif kind == 2:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            lines.append(format_answer(f"{a} + {b} = {a + b}. {words}.", str(a + b)))
        else:
            lines.append(format_answer(f"The {words} is {num}.", rng.choice("ABCD")))
    return lines


def _train_tokenizer(corpus: list[str], vocab_size: int, specials: tuple[str, ...]):
    """Byte-level BPE on `corpus`; the special tokens are appended after the learned vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(list(specials))
    return tok


def _wrap_tokenizer(tok, family: str):
    """Wrap as the transformers tokenizer class the real checkpoints use."""
    if family in ("qwen2_5_vl", "qwen2_vl"):
        from transformers import Qwen2Tokenizer

        wrapped = Qwen2Tokenizer(
            tokenizer_object=tok,
            unk_token=None,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            model_max_length=32768,
            chat_template=QWEN_CHAT_TEMPLATE,
        )
    else:
        from transformers import PreTrainedTokenizerFast

        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="<|endoftext|>",
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|im_end|>",
            model_max_length=8192,
            chat_template=IDEFICS3_CHAT_TEMPLATE,
        )
    return wrapped


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 into (temporal, height, width) like Qwen's [16, 24, 24] for head_dim 128."""
    half = head_dim // 2
    hw = (half - half // 4) // 2
    return [half - 2 * hw, hw, hw]


def _config(
    family: str,
    ids: dict[str, int],
    *,
    vocab_size: int,
    text_hidden: int,
    text_layers: int,
    text_heads: int,
    kv_heads: int,
    vision_hidden: int,
    vision_depth: int,
    vision_heads: int,
    image_size: int,
    dtype: str,
) -> dict:
    """config.json in the layout of the real checkpoints (Qwen: text keys at the top level)."""
    head_dim = text_hidden // text_heads
    text = {
        "hidden_size": text_hidden,
        "intermediate_size": text_hidden * 4,
        "num_hidden_layers": text_layers,
        "num_attention_heads": text_heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": dtype,
    }
    if family in ("qwen2_5_vl", "qwen2_vl"):
        rope = {"type": "mrope", "rope_type": "default", "mrope_section": _mrope_section(head_dim)}
        cfg = {
            "architectures": [
                "Qwen2_5_VLForConditionalGeneration"
                if family == "qwen2_5_vl"
                else "Qwen2VLForConditionalGeneration"
            ],
            "model_type": family,
            **text,
            "rope_scaling": rope,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
            "vision_token_id": ids["<|vision_pad|>"],
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
        }
        if family == "qwen2_5_vl":
            cfg["vision_config"] = {
                "model_type": "qwen2_5_vl",
                "depth": vision_depth,
                "hidden_size": vision_hidden,
                "intermediate_size": vision_hidden * 4,
                "out_hidden_size": text_hidden,
                "num_heads": vision_heads,
                "in_chans": 3,
                "patch_size": 14,
                "spatial_patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,
                "fullatt_block_indexes": [vision_depth - 1],
                "tokens_per_second": 2,
                "hidden_act": "silu",
            }
        else:
            cfg["vision_config"] = {
                "model_type": "qwen2_vl",
                "depth": vision_depth,
                "embed_dim": vision_hidden,
                "hidden_size": text_hidden,
                "num_heads": vision_heads,
                # transformers 5 validates this as an int
                "mlp_ratio": 4,
                "in_chans": 3,
                "patch_size": 14,
                "spatial_patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "hidden_act": "quick_gelu",
            }
        return cfg
    # idefics3 (SmolVLM): nested text_config (Llama) and vision_config (SigLIP-like)
    return {
        "architectures": ["Idefics3ForConditionalGeneration"],
        "model_type": "idefics3",
        "image_token_id": ids["<image>"],
        "scale_factor": 2,
        "vocab_size": vocab_size,
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_id": ids["<end_of_utterance>"],
        "pad_token_id": ids["<|im_end|>"],
        "tie_word_embeddings": True,
        "torch_dtype": dtype,
        "text_config": {"model_type": "llama", **text, "rope_theta": 100000.0},
        "vision_config": {
            "model_type": "idefics3_vision",
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 4,
            "num_attention_heads": vision_heads,
            "num_hidden_layers": vision_depth,
            "patch_size": 14,
            "image_size": image_size,
            "num_channels": 3,
            "layer_norm_eps": 1e-6,
        },
    }


def _image_processor_files(family: str, image_pixels: tuple[int, int], image_size: int) -> dict:
    """preprocessor_config.json (and processor_config.json) contents for the family."""
    if family in ("qwen2_5_vl", "qwen2_vl"):
        min_pixels, max_pixels = image_pixels
        pre = {
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor"
            if family == "qwen2_5_vl"
            else "Qwen2VLProcessor",
            "do_resize": True,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "do_convert_rgb": True,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            # mlx-vlm reads the top-level keys, transformers reads `size`
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        }
        return {"preprocessor_config.json": pre}
    pre = {
        "image_processor_type": "Idefics3ImageProcessor",
        "processor_class": "Idefics3Processor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"longest_edge": image_size},
        "max_image_size": {"longest_edge": image_size},
        # one global image, no tiles: image_seq_len tokens per image
        "do_image_splitting": False,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_pad": True,
        "resample": 1,
    }
    seq_len = (image_size // 14) ** 2 // 4
    proc = {"processor_class": "Idefics3Processor", "image_seq_len": seq_len}
    return {"preprocessor_config.json": pre, "processor_config.json": proc}


def build_tiny_random(
    out_dir: str | Path,
    family: str = "qwen2_5_vl",
    *,
    seed: int = 0,
    text_hidden: int = 256,
    text_layers: int = 4,
    text_heads: int = 4,
    kv_heads: int = 2,
    vision_hidden: int = 128,
    vision_depth: int = 2,
    vision_heads: int = 4,
    image_pixels: tuple[int, int] = (112 * 112, 224 * 224),
    vocab_size: int = 2048,
    corpus: Iterable[str] | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a loadable checkpoint of a tiny randomly initialised VLM in a real architecture.

    `family` is one of FAMILIES. `vocab_size` is the tokenizer's target size; the BPE learns
    fewer tokens on a small corpus, and the model's vocabulary is the tokenizer's actual size. Qwen families take images between image_pixels[0] and
    image_pixels[1] pixels (112x112 -> 16 image tokens); idefics3 resizes every image to a square of
    side sqrt(image_pixels[0]) (112 -> 16 image tokens). `corpus` adds texts to the tokenizer's
    training corpus (for example a warm-up's own training texts). The same arguments give
    byte-identical weights.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny-model family {family!r}; choose one of {FAMILIES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {DTYPES}")
    if text_hidden % text_heads or text_heads % kv_heads or vision_hidden % vision_heads:
        raise ValueError(
            "text_hidden must be divisible by text_heads, text_heads by kv_heads, "
            "and vision_hidden by vision_heads"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # ---- tokenizer ----
    specials = QWEN_SPECIAL_TOKENS if family != "idefics3" else IDEFICS3_SPECIAL_TOKENS
    texts = default_corpus() + (list(corpus) if corpus is not None else [])
    tok = _train_tokenizer(texts, vocab_size, specials)
    ids = {s: tok.token_to_id(s) for s in specials}
    # The embedding has exactly one row per token: a random model samples every id it has, and
    # mlx-vlm's detokenizer fails on ids the tokenizer does not know.
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    wrapped = _wrap_tokenizer(tok, family)
    wrapped.save_pretrained(out)
    template = wrapped.chat_template
    (out / "chat_template.json").write_text(json.dumps({"chat_template": template}, indent=2))

    # ---- image processor and config ----
    image_size = int(round(image_pixels[0] ** 0.5))
    if family == "idefics3" and (image_size % 28):
        raise ValueError(
            f"idefics3 image side {image_size} must be a multiple of 28 (patch 14 x 2)"
        )
    for name, content in _image_processor_files(family, image_pixels, image_size).items():
        (out / name).write_text(json.dumps(content, indent=2))
    config = _config(
        family,
        ids,
        vocab_size=vocab_size,
        text_hidden=text_hidden,
        text_layers=text_layers,
        text_heads=text_heads,
        kv_heads=kv_heads,
        vision_hidden=vision_hidden,
        vision_depth=vision_depth,
        vision_heads=vision_heads,
        image_size=image_size,
        dtype=dtype,
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gen = {
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": [config["eos_token_id"]],
        "pad_token_id": config["pad_token_id"],
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))

    write_random_weights(out, config, seed=seed, dtype=dtype)
    return out


DTYPES = ("float32", "bfloat16", "float16")


def write_random_weights(
    out: Path,
    config: dict,
    *,
    seed: int,
    dtype: str = "float32",
    bits: int | None = None,
    group_size: int = 64,
) -> dict:
    """Seeded random weights of mlx-vlm's own model class for `config`, saved as
    out/model.safetensors; with `bits`, quantised the way `mlx_vlm.convert` does (its
    quantize_model with convert's predicate: vision tower and other multimodal modules stay in
    `dtype`). Returns the config to write: `config` plus mlx-vlm's quantization keys when quantised.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_vlm.utils import get_model_and_args, update_module_configs

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {DTYPES}")
    arch, _ = get_model_and_args(json.loads(json.dumps(config)))
    cfg = json.loads(json.dumps(config))  # from_dict mutates its argument
    model_config = arch.ModelConfig.from_dict(cfg)
    model_config = update_module_configs(model_config, arch, cfg, ["text", "vision"])
    mx.random.seed(seed)
    model = arch.Model(model_config)
    cast = getattr(mx, dtype)
    model.update(tree_map(lambda v: v.astype(cast), model.parameters()))
    written = json.loads(json.dumps(config))
    if bits is not None:
        written = _quantize(model, written, bits=bits, group_size=group_size)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    return written


def _quantize(model, config: dict, *, bits: int, group_size: int) -> dict:
    """Quantise `model` in place with mlx-vlm's own helper and the predicate `mlx_vlm.convert`
    uses (multimodal modules stay unquantised; the model's own quant_predicate if it has one);
    returns the config with mlx-vlm's "quantization" / "quantization_config" keys."""
    from mlx_vlm.quant_utils import quantize_model
    from mlx_vlm.utils import skip_multimodal_module

    own = getattr(model, "quant_predicate", None)

    def predicate(path: str, module) -> bool | dict:
        if skip_multimodal_module(path):
            return False
        return own(path, module) if own is not None else True

    config.setdefault("vision_config", {})
    _, quantized = quantize_model(model, config, group_size, bits, quant_predicate=predicate)
    return quantized
