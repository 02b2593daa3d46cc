"""Images as users have them: every PIL mode becomes RGB (in one place, the Item), damaged or
missing files fail at load time naming the row, huge images cost a bounded number of image
tokens, tiny ones are scaled up, and an extreme shape is refused naming the item."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image
from reliability_helpers import picture, row, write_items

from hallucue_mlx.data.bench import BenchmarkError, load_benchmark
from hallucue_mlx.data.item import Item
from hallucue_mlx.forward import encode_prompt


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _tokens(tiny, item: Item) -> int:
    model, processor = tiny
    p = encode_prompt(processor, model, item, template="short")
    n = int((p.input_ids == model.config.image_token_id).sum().item())
    assert p.image_features is not None and p.image_features.shape[0] == n
    return n


def _item(image: Image.Image, id_: str = "x") -> Item:
    return Item(id_, "local", "", "How many sides?", "3", image, answer_kind="number")


# ---------------------------------------------------------------- every mode becomes RGB


def _sixteen_bit() -> Image.Image:
    arr = np.full((48, 64), 32896, dtype=np.uint16)  # 32896 / 257 = 128: mid grey
    arr[:, :8] = 65535
    return Image.fromarray(arr)


def _palette_transparent() -> Image.Image:
    img = picture().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    img.info["transparency"] = img.getpixel((0, 0))  # the background colour is transparent
    return img


def _rgba_transparent() -> Image.Image:
    img = Image.new("RGBA", (64, 48), (0, 0, 0, 0))  # a transparent black background
    img.paste((200, 20, 20, 255), (20, 10, 40, 30))
    return img


MODES = {
    # name: (image, file format, expected RGB at (1, 1) = the background, or None)
    "L": (picture(mode="L"), "PNG", None),
    "1": (picture(mode="1"), "PNG", (255, 255, 255)),
    "P": (picture(mode="P"), "PNG", None),
    "P+transparency": (_palette_transparent(), "PNG", (255, 255, 255)),
    "RGBA": (_rgba_transparent(), "PNG", (255, 255, 255)),
    "LA": (picture(mode="LA"), "PNG", None),
    "CMYK": (picture(mode="CMYK"), "JPEG", None),
    "I;16": (_sixteen_bit(), "PNG", (255, 255, 255)),
    "I": (_sixteen_bit().convert("I"), "TIFF", (255, 255, 255)),
    "F": (Image.fromarray(np.full((48, 64), 0.5, np.float32)), "TIFF", (128, 128, 128)),
}


def test_every_image_mode_loads_as_rgb_and_encodes(tmp_path, tiny):
    names = list(MODES)
    rows = [row(i, image=f"images/q{i}.{MODES[m][1].lower()}") for i, m in enumerate(names)]
    images = {
        f"q{i}.{MODES[m][1].lower()}": _png(MODES[m][0], MODES[m][1]) for i, m in enumerate(names)
    }
    d = write_items(tmp_path / "modes", rows, images)
    items = load_benchmark("local", path=str(d))
    assert len(items) == len(names)
    for m, it in zip(names, items):
        stored = Image.open(d / rows[names.index(m)]["image"])
        assert stored.mode != "RGB", f"{m}: the test file should keep its mode"
        assert it.image.mode == "RGB" and it.image.size == (64, 48), m
        want = MODES[m][2]
        if want is not None:
            got = it.image.getpixel((1, 1))
            assert max(abs(a - b) for a, b in zip(got, want)) <= 1, (m, got, want)
        assert _tokens(tiny, it) == 20, m  # 64x48 is scaled up to min_pixels: 140x112 px
    # 16-bit values are scaled, not clipped: 32896 is mid grey (Pillow's own conversion: white)
    for m in ("I;16", "I"):
        assert items[names.index(m)].image.getpixel((30, 30)) == (128, 128, 128), m
    # a transparent diagram background becomes white, the opaque shape keeps its colour
    rgba = items[names.index("RGBA")]
    assert rgba.image.getpixel((30, 20)) == (200, 20, 20)


def test_items_built_in_code_are_normalised_too():
    """The Item record itself converts: user code, corruptions and loaders all get RGB."""
    it = _item(_sixteen_bit())
    assert it.image.mode == "RGB" and it.image.getpixel((30, 30)) == (128, 128, 128)
    same = picture()
    assert _item(same).image is same  # RGB images are kept as they are (no copy)
    assert it.with_(image=_rgba_transparent()).image.getpixel((0, 0)) == (255, 255, 255)


def test_a_non_image_object_is_refused_naming_the_item(said):
    with pytest.raises(TypeError) as e:
        _item(np.zeros((4, 4, 3), np.uint8), "arr1")
    said("image is a numpy array (Item built in code)", str(e.value), "arr1", "PIL")


# ---------------------------------------------------------------- damaged and missing files


def test_truncated_image_file_fails_at_load_naming_row_and_fix(tmp_path, said):
    good = _png(picture())
    d = write_items(tmp_path / "trunc", [row(1), row(2)], {"q1.png": good, "q2.png": good[:200]})
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("local", path=str(d))
    said(
        "truncated image file (local JSONL)",
        str(e.value),
        "row 1 (id q2)",
        "column 'image'",
        "images/q2.png",
        "truncated",
        "Replace it with a valid PNG/JPEG or drop that row",
    )


def test_unreadable_image_bytes_fail_naming_row_and_fix(tmp_path, said):
    d = write_items(tmp_path / "junk", [row(7)], {"q7.png": b"this is not an image"})
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("local", path=str(d))
    said(
        "image file that is not an image (local JSONL)",
        str(e.value),
        "row 0 (id q7)",
        "column 'image'",
        "cannot be decoded",
        "drop that row",
        "data prepare",
    )


def test_missing_image_file_names_path_and_folder(tmp_path, said):
    d = write_items(tmp_path / "missing", [row(1), row(2)], {"q1.png": picture()})
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("local", path=str(d))
    said(
        "missing image file (local JSONL)",
        str(e.value),
        "id q2",
        "does not exist",
        str(d),
        "set it to null for a text-only item",
    )


def test_truncated_image_bytes_in_a_datasets_copy(tmp_path, said):
    """The `datasets` adapters path: a save_to_disk Geometry3K copy whose image bytes are cut."""
    feats = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    good = _png(picture())
    ds = datasets.Dataset.from_dict(
        {
            "images": [[{"bytes": good, "path": None}], [{"bytes": good[:150], "path": None}]],
            "problem": ["<image>Find x.", "<image>Find y."],
            "answer": ["3", "4"],
        },
        features=feats,
    )
    path = tmp_path / "geo"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(path))
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("geometry3k", "test", path=str(path))
    said(
        "truncated image bytes (datasets copy of geometry3k)",
        str(e.value),
        "geometry3k: row 1 (id 1)",
        "'images'",
        "hallucue-mlx data prepare geometry3k",
    )


def test_decompression_bomb_is_refused_with_a_reason(tmp_path, said, monkeypatch):
    d = write_items(tmp_path / "bomb", [row(1)], {"q1.png": picture()})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x48 is now over 2x the limit
    with pytest.raises(BenchmarkError) as e:
        load_benchmark("local", path=str(d))
    said("image over Pillow's decompression-bomb limit", str(e.value), "id q1", "Downscale it")


# ---------------------------------------------------------------- sizes


@pytest.mark.slow
def test_huge_image_is_refused_or_costs_a_bounded_number_of_image_tokens(tmp_path, tiny):
    """8000 x 8000 pixels: over model.max_image_pixels it is refused by name; with the limit
    lifted, the processor's max_pixels caps it (64 tokens for the tiny model)."""
    big = Image.new("L", (8000, 8000), 255)
    big.paste(0, (1000, 1000, 7000, 2000))
    d = write_items(tmp_path / "huge", [row(1)], {"q1.png": big})
    (item,) = load_benchmark("local", path=str(d))
    assert item.image.size == (8000, 8000)
    model, processor = tiny
    limit = processor.max_image_pixels
    with pytest.raises(ValueError, match=f"item {item.id}: its image is 8000x8000"):
        _tokens(tiny, item)
    try:
        processor.max_image_pixels = None
        cap = processor.image_processor.max_pixels // (28 * 28)
        assert _tokens(tiny, item) == cap == 64
    finally:
        processor.max_image_pixels = limit


@pytest.mark.parametrize("size", [(5, 5), (1, 1), (13, 27)])
def test_image_smaller_than_one_patch_is_scaled_up(tiny, size):
    """Below one 28x28 merged patch: scaled up to the processor's min_pixels (112x112 = 16)."""
    n = _tokens(tiny, _item(picture(size) if min(size) > 2 else Image.new("RGB", size)))
    assert n == 16 if size[0] == size[1] else 16 <= n <= 24


def test_extreme_aspect_ratio_is_refused_naming_the_item(tiny, said):
    with pytest.raises(ValueError) as e:
        _tokens(tiny, _item(Image.new("RGB", (1500, 5)), "strip"))
    said(
        "image with aspect ratio over 200:1 (at encoding)",
        str(e.value),
        "item strip",
        "1500x5",
        "aspect ratio",
    )
