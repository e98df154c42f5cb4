#!/usr/bin/env python3
"""Writes tests/sdk/fixtures.json: what the providers' official SDKs say about the wire.

bulkgen's simulator (src/sim) reads the JSON at compile time and refuses what the real
APIs refuse. Its rules must come from here, never from bulkgen's own model tables, so a
mistake in bulkgen's catalogue fails a test instead of hiding behind a simulator that
shares it.

Run it by hand when the SDKs move (CI never runs Python; it uses the committed JSON):

    python3 tests/sdk/generate.py

It makes a throw-away venv, installs exactly the pinned SDKs from PyPI, re-runs itself
inside it, introspects the SDKs, records the requests they really send (to a recording
server on 127.0.0.1, with a dummy key), and writes the JSON. When the SDK text changed so
that one of the regexes below no longer matches, it stops with an error naming the fact:
read the new docstring, fix the regex (or the rule), and regenerate.

Facts the SDKs do not carry (which models are served today, shut-down dates, per-model
Gemini sizes, the real error bodies) are in HAND_WRITTEN below, each with its source.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import io
import datetime as _dt
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import typing
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

PINS = {"openai": "3.54.0", "google-genai": "3.4.0"}
HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures.json"
DUMMY_KEY = "sk-dummy-fixture-key"


class FixtureError(SystemExit):
    """A fact could not be extracted: the SDK changed. Fix the generator, do not guess."""

    def __init__(self, what: str):
        super().__init__(f"generate.py: {what}")


# --------------------------------------------------------------------------------------
# HAND_WRITTEN: facts the SDKs do not carry. Every entry names where it comes from.
# State on 2026-11-24. Edit here when a provider announces a change, then regenerate.
# --------------------------------------------------------------------------------------

HAND_WRITTEN = {
    "as_of": "2026-11-24",
    "openai_models": {
        # Sources:
        # - /work/shared/docs/wire-formats.md, "Models change every few months" table.
        # - openai/types/image_model.py (ImageModel literal and its "Deprecated values").
        # - https://developers.openai.com/api/docs/deprecations ("Upcoming deprecations":
        #   gpt-image-1-mini, gpt-image-1.5 (+ gpt-image-1.5-2025-12-16) and
        #   chatgpt-image-latest shut down Dec 1, 2026; replacement gpt-image-2.6-*).
        "gpt-image-2": {"status": "active", "sizes": "free"},
        "gpt-image-2-2026-04-21": {"status": "active", "sizes": "free"},
        "gpt-image-2.5-sunburst": {"status": "active", "sizes": "free"},
        # In ImageModel and in the size docstring's free-size list, though not in
        # wire-formats.md's table: the SDK is the ground truth.
        "gpt-image-2.5-sunburst-2026-09-08": {"status": "active", "sizes": "free"},
        "gpt-image-2.5-flare": {"status": "active", "sizes": "free"},
        "gpt-image-2.5-flare-2026-09-08": {"status": "active", "sizes": "free"},
        # The SDK's size docstring does not list the 2.6 models among the free-size ones
        # (it predates them: released 2026-11-04). wire-formats.md's table gives them
        # free WxH sizes; third-party docs agree on ratios 1:3..3:1 and 1K/2K/4K output
        # (https://wavespeed.ai/gpt-image-2-6-api, https://docs.apiyi.com/en/live/2026-11/
        # gpt-image-2-6-gif-size-table: 8,294,400-pixel budget, 3840 edge).
        "gpt-image-2.6-sunburst": {"status": "active", "sizes": "free", "sizes_note": "not in the SDK's free-size list; wire-formats.md and third-party docs"},
        "gpt-image-2.6-flare": {"status": "active", "sizes": "free", "sizes_note": "not in the SDK's free-size list; wire-formats.md and third-party docs"},
        "gpt-image-1.5": {"status": "deprecated", "shutdown": "2026-12-01", "sizes": "standard"},
        "gpt-image-1.5-2025-12-16": {"status": "deprecated", "shutdown": "2026-12-01", "sizes": "standard", "sizes_note": "snapshot named on the deprecations page only"},
        "gpt-image-1-mini": {"status": "deprecated", "shutdown": "2026-12-01", "sizes": "standard"},
        "chatgpt-image-latest": {"status": "deprecated", "shutdown": "2026-12-01", "sizes": "standard"},
        "gpt-image-1": {"status": "shutdown", "shutdown": "2026-10-23", "sizes": "standard"},
        "dall-e-2": {"status": "shutdown", "shutdown": "2026-05-12", "sizes": None},
        "dall-e-3": {"status": "shutdown", "shutdown": "2026-05-12", "sizes": None},
    },
    # gpt-image-2 family limits the SDK only alludes to ("the model's current pixel and
    # edge limits"). Sources: MicrosoftDocs/azure-ai-docs PR #779 (articles/foundry/openai/
    # how-to/dall-e.md: "Total pixel count between 655,360 and 8,294,400"), openclaw PR
    # #118476 ("maximum edge 3840 ... 655360 through 8294400 total pixels"), wire-formats.md.
    "openai_free_size_min_pixels": 655_360,
    # 1.x models and `auto`: wire-formats.md ("The 1.x models take only 1024x1024,
    # 1536x1024, 1024x1536, auto"); the SDK: "`auto` is supported for models that allow
    # automatic sizing".
    "openai_auto_for": ["free", "standard"],
    # xhigh/max: the SDK names the 2.5 family only; third-party docs for 2.6 list
    # "quality (low / medium / high / xhigh / max)" (https://wavespeed.ai/gpt-image-2-6-api,
    # docs.comfy.org tutorials/partner-nodes/openai/gpt-image-2-6: "niveles de calidad de
    # low a max").
    "openai_xhigh_max_extra": ["gpt-image-2.6-sunburst", "gpt-image-2.6-flare"],
    "gemini_models": {
        # Sources:
        # - https://ai.google.dev/gemini-api/docs/deprecations: gemini-3.1-flash-image and
        #   gemini-3-pro-image released May 28, 2026 (no shutdown announced); the two
        #   -preview ids shut down June 25, 2026; gemini-2.5-flash-image October 2, 2026.
        # - Per-model sizes and ratios: wire-formats.md; the SDK's ImageConfig docstring
        #   lists only 8 ratios and 1K/2K/4K, its AspectRatio/ImageSize enums all 14 and
        #   512 without saying which model takes what. The real error for 3.1 Flash Image
        #   lists all 14 ("aspect_ratio must be one of '1:1', '1:4', '1:8', ... or
        #   '21:9'", muyouzhi6/astrbot_plugin_gitee_aiimg#37); HKUDS/nanobot PR #4656:
        #   the four extreme ratios only for Gemini 3.1 Flash Image, rejected for Gemini 3
        #   Pro Image; vercel/ai#12911: imageSize "512" on 3.1 Flash Image.
        "gemini-3-pro-image": {
            "status": "active",
            "image_sizes": ["1K", "2K", "4K"],
            "aspect_ratios": ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"],
            "display_name": "Nano Banana Pro",
        },
        "gemini-3.1-flash-image": {
            "status": "active",
            "image_sizes": ["512", "1K", "2K", "4K"],
            "aspect_ratios": "all",
            "display_name": "Nano Banana 2",
        },
        "gemini-3-pro-image-preview": {"status": "shutdown", "shutdown": "2026-06-25"},
        "gemini-3.1-flash-image-preview": {"status": "shutdown", "shutdown": "2026-06-25"},
        "gemini-2.5-flash-image": {"status": "shutdown", "shutdown": "2026-10-02"},
    },
    # The seeds' aggregator (wire-formats.md, models table): OpenAI dialect, pixel sizes
    # from a fixed list, and it takes response_format url|b64_json.
    "aggregator_models": {
        "nano-banana-pro": {
            "status": "active",
            "sizes": ["1024x1024", "2048x2048", "4096x4096"],
            "response_format": ["url", "b64_json"],
        },
    },
    # Reference images. The SDKs carry OpenAI's edit limits (openai_facts: edits) and the
    # Files API's resource shape; the rest is here.
    "references": {
        "gemini_models": {
            # Sources: wire-formats.md models table ("up to 14 reference images" for both);
            # Google Cloud "Image understanding" (docs.cloud.google.com/vertex-ai/
            # generative-ai/docs/multimodal/image-understanding): "Gemini 3 Pro Image ...
            # Maximum images per prompt: 14" and the same 14 for the model with the 4:1 and
            # 8:1 ratios (3.1 Flash Image); third-party docs for 3.1 Flash Image: "Up to 14
            # Reference Images: Up to 10 objects + 4 characters" (pypi ultimate-gemini-mcp 6.x).
            "gemini-3-pro-image": {"max_reference_images": 14},
            "gemini-3.1-flash-image": {"max_reference_images": 14},
        },
        # ai.google.dev image understanding, and the API's own error text: "MIME type must be
        # image/png, image/jpeg, image/webp, image/heic, or image/heif."
        # (EvanZhouDev/gemini-ai#3; discuss.ai.google.dev/t/71468 lists the same five).
        "gemini_mime_types": ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"],
        # "Always use the Files API when the total request size (including the files, text
        # prompt, system instructions, etc.) is larger than 100 MB" (ai.google.dev/gemini-api/
        # docs/files, 2026; raised from 20 MB in January 2026 per wire-formats.md and
        # blog.google "Increased file size limits ... in Gemini API"). "MB" is not defined
        # there: 100 MiB is the simulator's bound; a client should keep under 100,000,000.
        "gemini_inline_request_max_bytes": 100 * 1024 * 1024,
        # "The File API lets you store up to 20 GB of files per project, with a per-file
        # maximum size of 2 GB. Files are stored for 48 hours." (ai.google.dev/gemini-api/
        # docs/files note, quoted on discuss.ai.google.dev/t/50428; ai.google.dev tutorials/
        # prompting_with_media). GB taken as GiB.
        "gemini_file_max_bytes": 2 * 1024 ** 3,
        "gemini_project_max_bytes": 20 * 1024 ** 3,
        "gemini_file_ttl_hours": 48,
        # OpenAI "MB" in the SDK's "less than 50MB" / mask "less than 4MB": taken as MiB.
        "openai_mb": 1024 * 1024,
        # The seeds' aggregator (openai dialect): nothing public says what its
        # /v1/images/edits takes. Aggregators that serve Gemini image models behind the
        # OpenAI shape expose /v1/images/edits as multipart with `image` parts
        # (lbjlaq/Antigravity-Manager#2226: model gemini-3.1-flash-image, fields prompt,
        # image, mask) and ignore a mask ("the mask does not seem to constrain the edit
        # area", same issue). Assumed here: edits taken, the Gemini model's 14 images,
        # OpenAI's three formats and 50 MiB per file, no mask. Unverified.
        "aggregator_models": {
            "nano-banana-pro": {"edits": True, "max_reference_images": 14, "formats": ["image/png", "image/jpeg", "image/webp"], "mask": False, "note": "unverified: no public documentation of the seeds' aggregator's edits"},
        },
    },
    # Real error bodies. Sources: wire-formats.md ("Unknown parameter: 'response_format'."
    # code unknown_parameter; refused size: 400 invalid_value, param "size"); the fixed-list
    # size message as OpenAI sends it ("Invalid value: '1254x836'. Supported values are:
    # '1024x1024', '1024x1536', '1536x1024', and 'auto'.", pollinations/pollinations#5037);
    # Gemini's per-field INVALID_ARGUMENT text (astrbot_plugin_gitee_aiimg#37 above);
    # Gemini's 404 (wire-formats.md; {version} is v1beta there, v1 under the SDK's default
    # API version); OpenAI's model_not_found message as the simulator
    # already sends it.
    "errors": {
        "openai_unknown_parameter": {
            "status": 400,
            "body": {"error": {"message": "Unknown parameter: '{param}'.", "type": "invalid_request_error", "param": "{param}", "code": "unknown_parameter"}},
        },
        "openai_invalid_value": {
            "status": 400,
            "body": {"error": {"message": "Invalid value: '{value}'. {why}", "type": "invalid_request_error", "param": "{param}", "code": "invalid_value"}},
            "why_fixed_list": "Supported values are: {list}.",
        },
        "openai_model_not_found": {
            "status": 404,
            "body": {"error": {"message": "The model `{model}` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": None, "code": "model_not_found"}},
        },
        "gemini_invalid_field": {
            "status": 400,
            "body": {"error": {"code": 400, "message": "* GenerateContentRequest.generation_config.image_config.{field}: {field} must be one of {list}.\n", "status": "INVALID_ARGUMENT"}},
        },
        "gemini_not_found": {
            "status": 404,
            "body": {"error": {"code": 404, "message": "models/{model} is not found for API version {version}, or is not supported for generateContent.", "status": "NOT_FOUND"}},
        },
        # A fileData part (or files.get) naming a file that is missing, deleted or expired:
        # googleapis/python-genai#1218 ("403 Forbidden error: You do not have permission to
        # access the File xxxx or it may not exist"); discuss.ai.google.dev/t/50428 (files
        # gone after 48 h: "HTTP 403: either you don't have permission or the file is
        # missing"). {id} is the id without "files/".
        "gemini_file_gone": {
            "status": 403,
            "body": {"error": {"code": 403, "message": "You do not have permission to access the File {id} or it may not exist.", "status": "PERMISSION_DENIED"}},
        },
        # An image part whose MIME type Gemini does not take: "Unsupported MIME type:
        # image/jpg" (ogkalu2/comic-translate#399, the full body; charmbracelet/crush#995;
        # google/adk-python#5693 for image/svg+xml).
        "gemini_unsupported_mime": {
            "status": 400,
            "body": {"error": {"code": 400, "message": "Unsupported MIME type: {mime}", "status": "INVALID_ARGUMENT"}},
        },
        # Image bytes that do not decode as an image of the declared kind:
        # AmberSahdev/Open-Interface#64 ({'error': {'code': 400, 'message': 'Provided image
        # is not valid', 'status': 'INVALID_ARGUMENT'}}).
        "gemini_invalid_image": {
            "status": 400,
            "body": {"error": {"code": 400, "message": "Provided image is not valid", "status": "INVALID_ARGUMENT"}},
        },
        # More reference images than the model takes: no public text of the real message
        # was found. Google's generic INVALID_ARGUMENT body, as it answers unusable image
        # inputs (googleapis/js-genai#862: "Request contains an invalid argument.").
        "gemini_too_many_images": {
            "status": 400,
            "body": {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}},
            "note": "real text unknown; generic INVALID_ARGUMENT body",
        },
        # A request larger than the inline limit: no public body found; generic shape.
        "gemini_request_too_large": {
            "status": 400,
            "body": {"error": {"code": 400, "message": "Request payload size exceeds the limit: {limit} bytes.", "status": "INVALID_ARGUMENT"}},
            "note": "real text unknown; Google's INVALID_ARGUMENT shape",
        },
        # A file part whose declared type is not taken: prism-php/prism#725 ("Invalid file
        # 'image[0]': unsupported mimetype ('application/octet-stream'). Supported file
        # formats are 'image/jpeg', 'image/png', and 'image/webp'." param image[0], code
        # unsupported_file_mimetype); Comfy-Org/ComfyUI#9329 (type invalid_request_error).
        # For a mask the same check names 'image/png' alone (openai/openai-node#1468 shows
        # "Supported file formats are 'image/png'." for a PNG-only field).
        "openai_unsupported_mimetype": {
            "status": 400,
            "body": {"error": {"message": "Invalid file '{param}': unsupported mimetype ('{mime}'). Supported file formats are {list}.", "type": "invalid_request_error", "param": "{param}", "code": "unsupported_file_mimetype"}},
        },
        # Bytes that are not an image of a taken format: lofcz/LLMTornado#105 ("Invalid
        # image file or mode for image 1, please check your image file. ...", type
        # image_generation_user_error, code invalid_image_file). The request-id sentence
        # is left out.
        "openai_invalid_image_file": {
            "status": 400,
            "body": {"error": {"message": "Invalid image file or mode for image {index}, please check your image file.", "type": "image_generation_user_error", "param": None, "code": "invalid_image_file"}},
        },
        # More than 16 images: no public text of OpenAI's answer was found. OpenAI's
        # array-length validation shape ("Invalid '{param}': array too long. Expected an
        # array with maximum length N, but got an array with length M instead.", code
        # array_above_max_length), as it answers other over-long arrays.
        "openai_too_many_images": {
            "status": 400,
            "body": {"error": {"message": "Invalid 'image': array too long. Expected an array with maximum length {max}, but got an array with length {got} instead.", "type": "invalid_request_error", "param": "image", "code": "array_above_max_length"}},
            "note": "real text unknown; OpenAI's array-length shape",
        },
        # A file over the size limit (50 MB image, 4 MB mask): no public text found.
        "openai_file_too_large": {
            "status": 400,
            "body": {"error": {"message": "Invalid file '{param}': file too large ({got} bytes). Maximum size is {max} bytes.", "type": "invalid_request_error", "param": "{param}", "code": "file_too_large"}},
            "note": "real text unknown; OpenAI's invalid_request_error shape",
        },
        # A mask whose bytes are not a PNG (declared image/png): no public text found;
        # the invalid-image shape above, naming the mask.
        "openai_invalid_mask": {
            "status": 400,
            "body": {"error": {"message": "Invalid mask image: the mask must be a valid PNG file.", "type": "invalid_request_error", "param": "mask", "code": "invalid_image_file"}},
            "note": "real text unknown",
        },
        # An edit without its images: OpenAI's missing-parameter body ("Missing required
        # parameter: 'image'." with param image, as BerriAI/litellm#42189 reproduces
        # OpenAI's shape; code missing_required_parameter as OpenAI sends for other fields).
        # The edit endpoint keeps the generation rules: "Unknown parameter:
        # 'response_format'." on /v1/images/edits with gpt-image-2 (nexu-io/open-design#5727).
        "openai_missing_parameter": {
            "status": 400,
            "body": {"error": {"message": "Missing required parameter: '{param}'.", "type": "invalid_request_error", "param": "{param}", "code": "missing_required_parameter"}},
        },
        # A request body over the simulator's bound (not the provider's): 413 as proxies send.
        "request_too_large": {
            "status": 413,
            "body": {"error": {"message": "Request body too large: more than {limit} bytes.", "type": "invalid_request_error", "param": None, "code": "request_too_large"}},
            "note": "the simulator's own bound",
        },
    },
}


# --------------------------------------------------------------------------------------
# Bootstrapping: a throw-away venv with exactly the pinned SDKs.
# --------------------------------------------------------------------------------------


def bootstrap(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bulkgen-sdk-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        pins = [f"{name}=={version}" for name, version in PINS.items()]
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins], check=True)
        cmd = [str(py), str(Path(__file__).resolve()), "--inside-venv", "--out", str(args.out)]
        sys.exit(subprocess.run(cmd).returncode)


# --------------------------------------------------------------------------------------
# Introspection helpers
# --------------------------------------------------------------------------------------


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def must(pattern: str, text: str, what: str, flags: int = 0) -> re.Match:
    m = re.search(pattern, one_line(text), flags)
    if not m:
        raise FixtureError(f"{what}: the SDK text no longer matches /{pattern}/. Text was: {one_line(text)!r}")
    return m


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def attribute_docs(module, class_name: str) -> dict[str, str]:
    """Docstrings of a class's annotated attributes (the string literal after each one),
    which Python does not keep at run time: read them from the module's source."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            docs, last = {}, None
            for stmt in node.body:
                if isinstance(stmt, (ast.AnnAssign, ast.Assign)):
                    target = stmt.target if isinstance(stmt, ast.AnnAssign) else stmt.targets[0]
                    last = target.id if isinstance(target, ast.Name) else None
                elif isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant) and isinstance(stmt.value.value, str) and last:
                    docs[last] = inspect.cleandoc(stmt.value.value)
                    last = None
            return docs
    raise FixtureError(f"class {class_name} not found in {module.__name__}")


def literal_values(annotation) -> list:
    """Every Literal value inside an annotation (through Union, Optional, Required...)."""
    out: list = []
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        for v in literal_values(arg):
            if v not in out:
                out.append(v)
    return out


def type_names(annotation) -> list[str]:
    names = []
    for arg in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(arg) is typing.Literal:
            names.append("Literal")
        elif arg is type(None):
            names.append("None")
        else:
            names.append(getattr(arg, "__name__", str(arg)))
    return names


# --------------------------------------------------------------------------------------
# openai
# --------------------------------------------------------------------------------------


def openai_facts() -> dict:
    import openai
    import typing_extensions
    from openai.types import image_edit_params, image_generate_params, image_model

    src_gen = "openai/types/image_generate_params.py"
    src_edit = "openai/types/image_edit_params.py"
    src_model = "openai/types/image_model.py"

    models = list(typing.get_args(image_model.ImageModel))
    if not models:
        raise FixtureError("openai.types.image_model.ImageModel has no Literal values")
    # The module-level docstring after ImageModel carries its "Deprecated values".
    tree = ast.parse(inspect.getsource(image_model))
    deprecated_doc = ""
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, (ast.AnnAssign, ast.Assign)) and "ImageModel" in ast.unparse(stmt):
            nxt = tree.body[i + 1] if i + 1 < len(tree.body) else None
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                deprecated_doc = inspect.cleandoc(nxt.value.value)
    deprecated = []
    for m in re.finditer(r'- ((?:"[^"]+"(?:, )?)+): (.+?)(?=\n- |\Z)', deprecated_doc, re.S):
        names = re.findall(r'"([^"]+)"', m.group(1))
        note = one_line(m.group(2))
        date = re.search(r"(?:shut down|retired) on ([A-Z][a-z]+ \d{1,2}, \d{4})", note)
        iso = _dt.datetime.strptime(date.group(1), "%B %d, %Y").date().isoformat() if date else None
        for name in names:
            deprecated.append({"model": name, "shutdown": iso, "note": note})
    if not deprecated:
        raise FixtureError(f"{src_model}: no 'Deprecated values' list after ImageModel")

    def params(module, class_name: str, src: str) -> dict:
        hints = typing_extensions.get_type_hints(getattr(module, class_name), include_extras=False)
        docs = attribute_docs(module, class_name)
        out = {}
        for name in ["model", "prompt", "size", "response_format", "quality", "output_format", "background", "moderation", "n", "output_compression", "style", "input_fidelity", "image", "mask"]:
            if name not in hints:
                continue
            out[name] = {
                "types": type_names(hints[name]),
                "literals": literal_values(hints[name]),
                "doc": docs.get(name, ""),
                "source": f"{src} {class_name}.{name}",
            }
        return out

    gen = params(image_generate_params, "ImageGenerateParamsBase", src_gen)
    edit = params(image_edit_params, "ImageEditParamsBase", src_edit)

    # --- size rules, parsed out of the size docstring -----------------------------------
    size_doc = gen["size"]["doc"]
    src_size = gen["size"]["source"] + " (docstring)"
    free_list = must(r"For (.+?), arbitrary resolutions are supported as `WIDTHxHEIGHT` strings", size_doc, "free-size models")
    free_models = backticked(free_list.group(1))
    multiple = int(must(r"Width and height must both be divisible by (\d+)", size_doc, "size multiple").group(1))
    ratio = must(r"aspect ratio must be between (\d+):(\d+) and (\d+):(\d+)", size_doc, "size ratio range")
    ratio_min = [int(ratio.group(1)), int(ratio.group(2))]
    ratio_max = [int(ratio.group(3)), int(ratio.group(4))]
    experimental = must(r"Resolutions above `(\d+)x(\d+)` are experimental", size_doc, "experimental sizes")
    maximum = must(r"maximum supported resolution is `(\d+)x(\d+)`", size_doc, "maximum size")
    max_w, max_h = int(maximum.group(1)), int(maximum.group(2))
    limits = must(r"must also satisfy the model's current pixel and edge limits", size_doc, "pixel and edge limits")
    standard = must(r"The standard sizes (.+?) are supported by the GPT image models", size_doc, "standard sizes")
    standard_sizes = backticked(standard.group(1))
    auto = must(r"`auto` is supported for models that allow automatic sizing", size_doc, "auto size")
    legacy = must(r"Deprecated values: - (.+?): This legacy size suggestion", size_doc, "legacy sizes")
    legacy_sizes = re.findall(r'"([^"]+)"', legacy.group(1))
    for m in free_models:
        if m not in models:
            raise FixtureError(f"{src_size}: free-size model {m!r} is not in ImageModel")

    # --- response_format ---------------------------------------------------------------
    rf_doc = gen["response_format"]["doc"]
    rf = must(r"(Unsupported for GPT image models), which always return base64-encoded images", rf_doc, "response_format docstring")

    # --- quality -----------------------------------------------------------------------
    q_doc = gen["quality"]["doc"]
    q_gpt = must(r"`high`, `medium` and `low` are supported for the GPT image models", q_doc, "quality for GPT image models")
    q_extra = must(r"((?:`[^`]+`(?:,| and)? )+)including their `(\d{4}-\d\d-\d\d)` snapshots, also support `(\w+)` and `(\w+)`", q_doc, "xhigh/max quality")
    q_extra_models = backticked(q_extra.group(1))
    q_snap = q_extra.group(2)
    q_extra_models += [f"{m}-{q_snap}" for m in q_extra_models if f"{m}-{q_snap}" in models]
    q_dalle = must(r'"standard", "hd": This quality was only supported by retired DALL·E models', q_doc, "DALL-E qualities")

    # --- n, prompt ---------------------------------------------------------------------
    n = must(r"Must be between (\d+) and (\d+)", gen["n"]["doc"], "n range")
    prompt_max = must(r"The maximum length is (\d+) characters", gen["prompt"]["doc"], "prompt length")

    # --- edits: images, mask, models (image_edit_params.py docstrings) -------------------
    img_doc = edit["image"]["doc"]
    src_img = edit["image"]["source"] + " (docstring)"
    img_models = backticked(must(r"For the GPT image models \((.+?)\), each image should be", img_doc, "edit image models").group(1))
    img_formats = must(r"each image should be a `(\w+)`, `(\w+)`, or `(\w+)` file less than (\d+)MB", img_doc, "edit image formats and size")
    img_max = int(must(r"You can provide up to (\d+) images", img_doc, "edit image count").group(1))
    img_same = must(r"`([\w.-]+)` follows the same input constraints as GPT image models", img_doc, "edit image constraints for chatgpt-image-latest")
    mask_doc = edit["mask"]["doc"]
    src_mask = edit["mask"]["source"] + " (docstring)"
    mask_png = must(r"Must be a valid (PNG) file, less than (\d+)MB, and have the same dimensions as `image`", mask_doc, "mask format and size")
    mask_first = must(r"If there are multiple images provided, the mask will be applied on the first image", mask_doc, "mask applies to the first image")
    mask_alpha = must(r"fully transparent areas \(e\.g\. where alpha is zero\) indicate where `image` should be edited", mask_doc, "mask transparency")
    edit_model_doc = edit["model"]["doc"]
    edit_models = backticked(must(r"The GPT image model to use for image editing \((.+?)\)\.", edit_model_doc, "edit models").group(1))
    from openai._utils import _utils as oa_utils
    from openai.resources import images as oa_images

    edit_src = inspect.getsource(oa_images.Images.edit)
    edit_paths = ast.literal_eval(must(r"paths=(\[\[.+?\]\])\s*\)", edit_src, "Images.edit extract_files paths").group(1))
    array_format = inspect.signature(oa_utils.extract_files).parameters["array_format"].default
    for m in img_models + edit_models:
        if m not in models:
            raise FixtureError(f"{src_edit}: edit model {m!r} is not in ImageModel")
    # `jpg` in the text; the MIME type the API names is image/jpeg (its own error text:
    # "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.").
    mime_of = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg"}
    formats = [img_formats.group(i) for i in (1, 2, 3)]
    for f in formats:
        if f not in mime_of:
            raise FixtureError(f"{src_img}: unknown image format {f!r}")
    edits = {
        "image_models": {"values": img_models + [img_same.group(1)], "source": src_img + ", 'For the GPT image models (...)' and the chatgpt-image-latest sentence"},
        "models": {"values": edit_models, "source": edit["model"]["source"] + " (docstring): 'The GPT image model to use for image editing (...)'"},
        "max_images": {"value": img_max, "source": src_img},
        "formats": {"values": formats, "mime_types": [mime_of[f] for f in formats], "source": src_img},
        "max_mb": {"value": int(img_formats.group(4)), "text": img_formats.group(0), "source": src_img},
        "mask": {
            "format": mask_png.group(1),
            "mime_types": ["image/png"],
            "max_mb": int(mask_png.group(2)),
            "applies_to_first_image": bool(mask_first),
            "transparent_marks_edit": bool(mask_alpha),
            "text": [mask_png.group(0), mask_first.group(0)],
            "source": src_mask,
        },
        "file_paths": {
            "values": edit_paths,
            "array_format": array_format,
            "source": "openai/resources/images.py Images.edit (extract_files paths) and openai/_utils/_utils.py extract_files (default array_format)",
        },
    }

    gpt_prefixes = ["gpt-image", "chatgpt-image"]
    for m in models:
        if not m.startswith("dall-e") and not any(m.startswith(p) for p in gpt_prefixes):
            raise FixtureError(f"{src_model}: {m!r} is neither DALL-E nor gpt-image*/chatgpt-image*: review gpt_image_prefixes")

    return {
        "image_models": {"values": models, "source": f"{src_model} ImageModel (Literal)"},
        "image_models_deprecated": {"values": deprecated, "source": f"{src_model} ImageModel docstring, 'Deprecated values'"},
        "generate_params": gen,
        "edit_params": edit,
        "size_rules": {
            "free": {
                "models": free_models,
                "multiple_of": multiple,
                "ratio_min": ratio_min,
                "ratio_max": ratio_max,
                "experimental_above": [int(experimental.group(1)), int(experimental.group(2))],
                "max_resolution": [max_w, max_h],
                "max_edge": max(max_w, max_h),
                "max_pixels": max_w * max_h,
                "pixel_and_edge_limits_mentioned": bool(limits),
                "source": src_size,
                "derivation": "max_edge and max_pixels follow from the maximum resolution; the minimum pixel count is hand-written (the SDK gives no number)",
            },
            "standard": {"sizes": standard_sizes, "source": src_size},
            "auto": {"text": auto.group(0), "source": src_size},
            "legacy_sizes": {"values": legacy_sizes, "source": src_size + ", 'Deprecated values'"},
        },
        "response_format": {
            "literals": gen["response_format"]["literals"],
            "unsupported_for": rf.group(1),
            "gpt_image_prefixes": gpt_prefixes,
            "source": gen["response_format"]["source"] + " (docstring); prefixes checked against ImageModel",
        },
        "quality": {
            "literals": gen["quality"]["literals"],
            "gpt_image": ["low", "medium", "high", "auto"],
            "xhigh_max_models": q_extra_models,
            "xhigh_max_values": [q_extra.group(3), q_extra.group(4)],
            "dalle_only": ["standard", "hd"],
            "text": [q_gpt.group(0), q_extra.group(0), q_dalle.group(0)],
            "source": gen["quality"]["source"] + " (docstring)",
        },
        "n": {"min": int(n.group(1)), "max": int(n.group(2)), "source": gen["n"]["source"] + " (docstring)"},
        "edits": edits,
        "prompt_max_chars": {"value": int(prompt_max.group(1)), "source": gen["prompt"]["source"] + " (docstring)"},
        "enums": {
            name: {"values": gen[name]["literals"], "source": gen[name]["source"] + " (Literal)"}
            for name in ["output_format", "background", "moderation"]
        },
    }


# --------------------------------------------------------------------------------------
# google-genai
# --------------------------------------------------------------------------------------


def genai_facts() -> dict:
    from google.genai import types

    src = "google/genai/types.py"
    fields = {}
    for name in ["aspect_ratio", "image_size"]:
        field = types.ImageConfig.model_fields.get(name)
        if field is None:
            raise FixtureError(f"{src}: ImageConfig.{name} is gone")
        doc = one_line(field.description or "")
        fields[name] = {
            "annotation": str(field.annotation),
            "doc": doc,
            "source": f"{src} ImageConfig.{name} (pydantic Field description)",
        }
    ratio_doc = must(r"Supported values are (.+?)\.?$", fields["aspect_ratio"]["doc"], "ImageConfig.aspect_ratio docstring")
    fields["aspect_ratio"]["documented_values"] = re.findall(r'"([^"]+)"', ratio_doc.group(1))
    size_doc = must(r"Supported values are (.+?)\. If not specified, the model will use default value `(\w+)`", fields["image_size"]["doc"], "ImageConfig.image_size docstring")
    fields["image_size"]["documented_values"] = backticked(size_doc.group(1))
    fields["image_size"]["default"] = size_doc.group(2)

    def enum_with_docs(enum_cls, class_name: str, value_pattern: str, what: str) -> dict:
        docs = attribute_docs(types, class_name)
        members, values = [], []
        for member in enum_cls:
            if member.name.endswith("_UNSPECIFIED"):
                continue
            doc = docs.get(member.name, "")
            m = must(value_pattern, doc, f"{class_name}.{member.name} ({what})")
            members.append(member.name)
            values.append(m.group(1))
        return {"members": members, "values": values, "source": f"{src} {class_name} (enum; value from each member's docstring)"}

    ratios = enum_with_docs(types.AspectRatio, "AspectRatio", r"^(\d+:\d+) aspect ratio", "ratio")
    sizes = enum_with_docs(types.ImageSize, "ImageSize", r"^(\d+K|\d+)(?:px)? image size", "size")
    finish = [m.value for m in types.FinishReason if not m.name.endswith("_UNSPECIFIED")]
    blocked = [m.value for m in types.BlockedReason if not m.name.endswith("_UNSPECIFIED")]
    for name in ["STOP", "IMAGE_SAFETY", "NO_IMAGE"]:
        if name not in finish:
            raise FixtureError(f"{src}: FinishReason.{name} is gone")

    # Per-model notes, if the docstrings carry any (in 3.4.0 they do not).
    notes = {}
    for needle in ["gemini-3-pro-image", "gemini-3.1-flash-image"]:
        hits = [one_line(f.description or "") for f in types.ImageConfig.model_fields.values() if needle in (f.description or "")]
        notes[needle] = hits
    # Files API: the File resource and its enums (reference images are uploaded once).
    file_fields = {}
    for name in ["name", "display_name", "mime_type", "size_bytes", "create_time", "update_time", "expiration_time", "sha256_hash", "uri", "state", "source", "error"]:
        field = types.File.model_fields.get(name)
        if field is None:
            raise FixtureError(f"{src}: File.{name} is gone")
        file_fields[name] = {"annotation": str(field.annotation), "doc": one_line(field.description or ""), "source": f"{src} File.{name} (pydantic Field description)"}
    must(r"SHA-256 hash of the uploaded bytes\. The hash value is encoded in base64 format", file_fields["sha256_hash"]["doc"], "File.sha256_hash encoding")
    must(r"Only set if the `File` is scheduled to expire", file_fields["expiration_time"]["doc"], "File.expiration_time")
    name_rule = must(r"The ID \(name excluding the \"files/\" prefix\) can contain up to (\d+) characters that are lowercase alphanumeric or dashes", file_fields["name"]["doc"], "File.name id rule")
    file_states = [m.value for m in types.FileState if not m.name.endswith("_UNSPECIFIED")]
    file_sources = [m.value for m in types.FileSource if not m.name.endswith("_UNSPECIFIED")]
    if "ACTIVE" not in file_states:
        raise FixtureError(f"{src}: FileState.ACTIVE is gone")
    from google.genai import _common, _extra_utils
    from google.genai import _api_client as _client_mod

    chunk = getattr(_client_mod, "CHUNK_SIZE", None)
    if not isinstance(chunk, int):
        raise FixtureError("google/genai/_api_client.py: CHUNK_SIZE is gone")
    upload_headers_src = inspect.getsource(_extra_utils.prepare_resumable_upload)
    start_headers = sorted(set(re.findall(r"'(X-Goog-Upload-[\w-]+)'", upload_headers_src)))
    if not start_headers:
        raise FixtureError("google/genai/_extra_utils.py prepare_resumable_upload: no X-Goog-Upload-* headers")
    b64_src = inspect.getsource(_common.encode_unserializable_types)
    b64 = must(r"base64\.(urlsafe_b64encode|b64encode)\(value\)", b64_src, "bytes encoding in requests").group(1)
    files = {
        "file_fields": file_fields,
        "file_id_max_chars": {"value": int(name_rule.group(1)), "source": f"{src} File.name"},
        "file_states": {"values": file_states, "source": f"{src} FileState (enum)"},
        "file_sources": {"values": file_sources, "source": f"{src} FileSource (enum)"},
        "sha256_hash_encoding": {"value": "base64", "source": f"{src} File.sha256_hash"},
        "upload_start_headers": {"values": start_headers, "source": "google/genai/_extra_utils.py prepare_resumable_upload"},
        "upload_chunk_bytes": {
            "value": chunk,
            "note": "files larger than this go in several POSTs: 'upload' with X-Goog-Upload-Offset at each chunk, 'upload, finalize' on the last; every answer must carry x-goog-upload-status (active, then final)",
            "source": "google/genai/_api_client.py CHUNK_SIZE and BaseApiClient._upload_fd",
        },
        "request_bytes_base64": {
            "value": "urlsafe" if b64 == "urlsafe_b64encode" else "standard",
            "source": "google/genai/_common.py encode_unserializable_types (bytes in a request body, e.g. inlineData.data)",
        },
    }
    from google.genai import _api_client

    default_version = getattr(_api_client, "GOOGLE_AI_API_DEFAULT_VERSION", None)
    if not default_version:
        raise FixtureError("google/genai/_api_client.py: GOOGLE_AI_API_DEFAULT_VERSION is gone")
    return {
        "default_api_version": {
            "value": default_version,
            "source": "google/genai/_api_client.py GOOGLE_AI_API_DEFAULT_VERSION (Gemini Developer API; GOOGLE_GENAI_API_VERSION overrides it)",
        },
        "image_config": fields,
        "aspect_ratio_enum": ratios,
        "image_size_enum": sizes,
        "finish_reasons": {"values": finish, "source": f"{src} FinishReason"},
        "blocked_reasons": {"values": blocked, "source": f"{src} BlockedReason"},
        "per_model_notes": {"values": notes, "source": f"{src} ImageConfig field descriptions (searched for model ids)"},
        "files": files,
    }


# --------------------------------------------------------------------------------------
# Requests the SDKs really send, recorded on 127.0.0.1
# --------------------------------------------------------------------------------------

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def png_bytes(width: int, height: int, extra: bytes = b"") -> bytes:
    """A real RGBA PNG (fully transparent where x < width/2, for a mask), with an optional
    private ancillary chunk carrying `extra` (bytes chosen so that standard and URL-safe
    base64 differ, which shows the alphabet the SDK uses)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b""
    for _y in range(height):
        rows += b"\x00" + b"".join(bytes([200, 30, 30, 0 if x < width // 2 else 255]) for x in range(width))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if extra:
        out += chunk(b"prVt", extra)
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# A JPEG's magic (SOI, APP0 "JFIF") and end marker; the recorder never decodes it.
JPEG_BYTES = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\xfb\xff\xbf" * 8 + bytes.fromhex("ffd9")
# \xfb\xff\xbf encodes to "+/+/" in standard base64 and "-_-_" in URL-safe.
PNG_REF = png_bytes(4, 4, b"\xfb\xff\xbf" * 8)
PNG_MASK = png_bytes(4, 4)
PNG_1PX_BYTES = base64.b64decode(PNG_1PX)


def digest(data: bytes) -> dict:
    return {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def base64_alphabet(text: str) -> str:
    if any(c in text for c in "-_"):
        return "urlsafe"
    if any(c in text for c in "+/"):
        return "standard"
    return "either"


def multipart_parts(content_type: str, raw: bytes) -> list[dict]:
    """Each part of a multipart/form-data body, as sent: name, filename, content type,
    and for files their length and sha256, for text fields their value."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise FixtureError(f"multipart body without a boundary: {content_type!r}")
    boundary = b"--" + m.group(1).encode()
    parts = []
    for piece in raw.split(boundary)[1:]:
        if piece.startswith(b"--"):
            break
        head, _, body = piece.lstrip(b"\r\n").partition(b"\r\n\r\n")
        body = body[:-2] if body.endswith(b"\r\n") else body
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'\bfilename="([^"]*)"', disp)
        entry = {
            "name": name.group(1) if name else None,
            "filename": filename.group(1) if filename else None,
            "content_type": headers.get("content-type"),
            "content_disposition": re.sub(r'filename="[^"]*"', 'filename="{FILENAME}"', disp),
        }
        if filename:
            entry.update(digest(body))
        else:
            entry["value"] = body.decode("utf-8", "replace")
        parts.append(entry)
    return parts


# Headers worth recording besides the key's (which is recorded by shape only).
RECORDED_HEADERS = ("x-goog-upload-", "content-length")
FILE_ID = "abc"


class Recorder(BaseHTTPRequestHandler):
    log: list = []

    def log_message(self, *args):  # quiet
        pass

    def _record(self, body, extra=None):
        parts = urlsplit(self.path)
        auth = {}
        for name in ["authorization", "x-goog-api-key"]:
            value = self.headers.get(name)
            if value is not None:
                # Never a key in the fixture, not even the dummy one: only its shape.
                auth[name] = value.replace(DUMMY_KEY, "{KEY}")
        content_type = self.headers.get("content-type")
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            "auth": auth,
            # multipart/form-data carries a random boundary: recorded without it.
            "content_type": content_type.split(";")[0] if content_type and content_type.startswith("multipart/") else content_type,
            "json": body,
        }
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-goog-upload-")}
        if headers:
            headers["content-length"] = self.headers.get("content-length")
            entry["headers"] = dict(sorted(headers.items()))
        entry.update(extra or {})
        Recorder.log.append(entry)
        return parts

    def _reply(self, obj, status=200, headers=None):
        data = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(status)
        if obj is not None:
            self.send_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _root(self) -> str:
        return f"http://{self.headers.get('host')}"

    def do_GET(self):
        parts = self._record(None)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        # google-genai and openai both GET {root}/v1/models...: tell them apart by the
        # key's header, as the simulator does.
        gemini = self.headers.get("x-goog-api-key") is not None
        version, _, rest = path.lstrip("/").partition("/")
        if gemini and rest.startswith("files/"):
            self._reply(gemini_file(self._root(), version, rest.split("/", 1)[1], PNG_REF))
        elif gemini and rest.startswith("models/"):
            self._reply(gemini_model(rest))
        elif gemini and rest == "models":
            # Two pages, so the SDK's pager shows how it sends the page token.
            if "pageToken" in query:
                self._reply({"models": [gemini_model("models/gemini-3.1-flash-image")]})
            else:
                self._reply({"models": [gemini_model("models/gemini-3-pro-image")], "nextPageToken": "page-2"})
        elif rest.startswith("models/"):
            model = path.rsplit("/", 1)[1]
            self._reply({"id": model, "object": "model", "created": 1776729600, "owned_by": "system"})
        elif rest == "models":
            self._reply({"object": "list", "data": [{"id": "gpt-image-2", "object": "model", "created": 1776729600, "owned_by": "system"}]})
        else:
            self._reply({"error": {"message": "not recorded"}}, 404)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        content_type = self.headers.get("content-type") or ""
        path = urlsplit(self.path).path
        command = (self.headers.get("x-goog-upload-command") or "").lower()
        if content_type.startswith("multipart/form-data"):
            parts = self._record(None, {"multipart": multipart_parts(content_type, raw)})
        elif path.startswith("/upload/") and command and command != "start":
            # The bytes of an upload: their length and hash, never the bytes.
            parts = self._record(None, {"body": digest(raw)})
        else:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = {"_raw": raw.decode(errors="replace")}
            parts = self._record(body)
        if parts.path.endswith("/images/generations") or parts.path.endswith("/images/edits"):
            self._reply({"created": 1776729600, "data": [{"b64_json": PNG_1PX}], "usage": {"total_tokens": 1}})
        elif ":generateContent" in parts.path:
            self._reply({
                "candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
                "modelVersion": "gemini-3-pro-image",
            })
        elif parts.path.startswith("/upload/") and command == "start":
            # As Google answers a resumable start: 200, an empty body, the session URL.
            version = parts.path.split("/")[2]
            url = f"{self._root()}/upload/{version}/files?upload_id=recorded-1&upload_protocol=resumable"
            self._reply(None, headers={"x-goog-upload-url": url, "x-goog-upload-status": "active", "x-goog-upload-chunk-granularity": "8388608"})
        elif parts.path.startswith("/upload/") and "finalize" in command:
            version = parts.path.split("/")[2]
            self._reply({"file": gemini_file(self._root(), version, FILE_ID, raw)}, headers={"x-goog-upload-status": "final"})
        elif parts.path.startswith("/upload/") and command == "upload":
            self._reply(None, headers={"x-goog-upload-status": "active"})
        else:
            self._reply({"error": {"message": "not recorded"}}, 404)


def gemini_file(root: str, version: str, file_id: str, data: bytes) -> dict:
    """A File resource as the Files API returns it (camelCase, sizeBytes as a string,
    sha256Hash in base64 per the SDK's File.sha256_hash)."""
    return {
        "name": f"files/{file_id}",
        "displayName": "ref.png",
        "mimeType": "image/png",
        "sizeBytes": str(len(data)),
        "createTime": "2026-11-24T10:00:00.000000Z",
        "updateTime": "2026-11-24T10:00:00.000000Z",
        "expirationTime": "2026-11-26T10:00:00.000000Z",
        "sha256Hash": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "uri": f"{root}/{version}/files/{file_id}",
        "state": "ACTIVE",
        "source": "UPLOADED",
    }


def gemini_model(name: str) -> dict:
    return {
        "name": name,
        "version": "001",
        "displayName": name.split("/", 1)[-1],
        "description": "recorded by tests/sdk/generate.py",
        "inputTokenLimit": 65536,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
    }


def record_requests() -> dict:
    import openai
    from google import genai
    from google.genai import types

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    # No proxy may sit between the SDKs and the recorder.
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"]:
        os.environ.pop(var, None)
    os.environ["NO_PROXY"] = "127.0.0.1"
    recorded: dict = {}

    def take(name: str, call: str, source: str, fn) -> None:
        Recorder.log = []
        fn()
        if not Recorder.log:
            raise FixtureError(f"{name}: the SDK sent nothing")
        recorded[name] = {"call": call, "source": source, "requests": list(Recorder.log)}

    tmp = Path(tempfile.mkdtemp(prefix="bulkgen-sdk-refs-"))
    try:
        oa = openai.OpenAI(api_key=DUMMY_KEY, base_url=root + "/v1", max_retries=0)
        take(
            "openai.images.generate",
            'client.images.generate(model="gpt-image-2", prompt="p", size="1536x1024", quality="high")',
            f"openai {openai.__version__}, base_url={{base}}/v1",
            lambda: oa.images.generate(model="gpt-image-2", prompt="p", size="1536x1024", quality="high"),
        )
        take(
            "openai.models.retrieve",
            'client.models.retrieve("gpt-image-2")',
            f"openai {openai.__version__} (the SDK calls it retrieve, not get)",
            lambda: oa.models.retrieve("gpt-image-2"),
        )
        take(
            "openai.models.list",
            "list(client.models.list())",
            f"openai {openai.__version__}",
            lambda: list(oa.models.list()),
        )
        # Edits: several images and a mask, as opened files (what users pass); one image
        # as an opened file; one image as bare bytes (no name: what the SDK then sends).
        (tmp / "ref1.png").write_bytes(PNG_REF)
        (tmp / "ref2.jpg").write_bytes(JPEG_BYTES)
        (tmp / "mask.png").write_bytes(PNG_MASK)
        edit_prompt = "put the product from the first image on the table of the second"

        def edit_many():
            with open(tmp / "ref1.png", "rb") as a, open(tmp / "ref2.jpg", "rb") as b, open(tmp / "mask.png", "rb") as m:
                oa.images.edit(model="gpt-image-2", image=[a, b], mask=m, prompt=edit_prompt, size="1024x1024")

        def edit_one():
            with open(tmp / "ref1.png", "rb") as a:
                oa.images.edit(model="gpt-image-2", image=a, prompt=edit_prompt, size="1024x1024")

        take(
            "openai.images.edit",
            'client.images.edit(model="gpt-image-2", image=[open("ref1.png", "rb"), open("ref2.jpg", "rb")], mask=open("mask.png", "rb"), prompt=PROMPT, size="1024x1024")',
            f"openai {openai.__version__}, base_url={{base}}/v1; files: ref1.png {digest(PNG_REF)}, ref2.jpg {digest(JPEG_BYTES)}, mask.png {digest(PNG_MASK)}",
            edit_many,
        )
        take(
            "openai.images.edit@single",
            'client.images.edit(model="gpt-image-2", image=open("ref1.png", "rb"), prompt=PROMPT, size="1024x1024")',
            f"openai {openai.__version__}, base_url={{base}}/v1",
            edit_one,
        )
        take(
            "openai.images.edit@bytes",
            'client.images.edit(model="gpt-image-2", image=PNG_BYTES, prompt=PROMPT)  # bare bytes, no file name',
            f"openai {openai.__version__}, base_url={{base}}/v1",
            lambda: oa.images.edit(model="gpt-image-2", image=PNG_REF, prompt=edit_prompt),
        )
        take(
            "openai.images.edit@tuple",
            'client.images.edit(model="gpt-image-2", image=[("ref1.png", PNG_BYTES, "image/png")], prompt=PROMPT)  # (name, bytes, type) tuples in a list of one',
            f"openai {openai.__version__}, base_url={{base}}/v1",
            lambda: oa.images.edit(model="gpt-image-2", image=[("ref1.png", PNG_REF, "image/png")], prompt=edit_prompt),
        )
        gen_config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K"),
        )
        gen_call = 'client.models.generate_content(model="gemini-3-pro-image", contents="p", config=GenerateContentConfig(response_modalities=["IMAGE"], image_config=ImageConfig(aspect_ratio="16:9", image_size="2K")))'
        # The SDK's default API version (what a user gets without saying one), then the
        # v1beta that wire-formats.md documents, asked for explicitly.
        for label, options in [
            ("", types.HttpOptions(base_url=root)),
            ("@v1beta", types.HttpOptions(base_url=root, api_version="v1beta")),
        ]:
            gc = genai.Client(api_key=DUMMY_KEY, http_options=options)
            where = f"google-genai {genai.__version__}, http_options=HttpOptions(base_url={{base}}" + (", api_version='v1beta')" if label else ") (the SDK's default API version)")
            take(
                "genai.models.generate_content" + label,
                gen_call,
                where,
                lambda: gc.models.generate_content(model="gemini-3-pro-image", contents="p", config=gen_config),
            )
            take(
                "genai.files.upload" + label,
                'client.files.upload(file="ref1.png", config={"mime_type": "image/png", "display_name": "ref1.png"})',
                where + f"; ref1.png {digest(PNG_REF)}",
                lambda: gc.files.upload(file=str(tmp / "ref1.png"), config={"mime_type": "image/png", "display_name": "ref1.png"}),
            )
            take(
                "genai.files.upload@bytesio" + label,
                'client.files.upload(file=io.BytesIO(PNG_BYTES), config={"mime_type": "image/png", "display_name": "ref1.png"})',
                where,
                lambda: gc.files.upload(file=io.BytesIO(PNG_REF), config={"mime_type": "image/png", "display_name": "ref1.png"}),
            )
            take(
                "genai.files.get" + label,
                f'client.files.get(name="files/{FILE_ID}")',
                where,
                lambda: gc.files.get(name=f"files/{FILE_ID}"),
            )
            file_uri = f"https://generativelanguage.googleapis.com/v1beta/files/{FILE_ID}"
            take(
                "genai.models.generate_content@refs" + label,
                f'client.models.generate_content(model="gemini-3-pro-image", contents=[Part.from_bytes(data=PNG_BYTES, mime_type="image/png"), Part.from_uri(file_uri="{file_uri}", mime_type="image/jpeg"), "PROMPT"], config=GenerateContentConfig(response_modalities=["IMAGE"], image_config=ImageConfig(aspect_ratio="16:9", image_size="2K")))',
                where + f"; PNG_BYTES {digest(PNG_REF)}",
                lambda: gc.models.generate_content(
                    model="gemini-3-pro-image",
                    contents=[
                        types.Part.from_bytes(data=PNG_REF, mime_type="image/png"),
                        types.Part.from_uri(file_uri=file_uri, mime_type="image/jpeg"),
                        "a product shot in the style of the references",
                    ],
                    config=gen_config,
                ),
            )
            take(
                "genai.models.get" + label,
                'client.models.get(model="gemini-3-pro-image")',
                where,
                lambda: gc.models.get(model="gemini-3-pro-image"),
            )
            take(
                "genai.models.list" + label,
                'list(client.models.list(config={"page_size": 1}))  # the recorder answers two pages',
                where,
                lambda: list(gc.models.list(config={"page_size": 1})),
            )
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    observe(recorded)
    return recorded


def observe(recorded: dict) -> None:
    """Adds to some recordings what they show, in words a client author looks for."""
    for name, rec in recorded.items():
        reqs = rec["requests"]
        if name.startswith("openai.images.edit"):
            parts = reqs[0]["multipart"]
            rec["observed"] = {
                "file_fields": [p["name"] for p in parts if p["filename"] is not None],
                "text_fields": [p["name"] for p in parts if p["filename"] is None],
                "file_parts": [{k: p[k] for k in ("name", "filename", "content_type")} for p in parts if p["filename"] is not None],
            }
        elif name.startswith("genai.models.generate_content@refs"):
            parts = reqs[0]["json"]["contents"][0]["parts"]
            inline = [p["inlineData"]["data"] for p in parts if "inlineData" in p]
            rec["observed"] = {
                "part_kinds_in_order": [next(iter(p)) for p in parts],
                "inline_data_base64": sorted({base64_alphabet(d) for d in inline}),
                "inline_data_padded": all(d.endswith("=") or len(d) % 4 == 0 for d in inline),
                "inline_data_decodes_to": [digest(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))) for d in inline],
            }
        elif name.startswith("genai.files.upload"):
            start, *rest = reqs
            rec["observed"] = {
                "requests": len(reqs),
                "start": {"path": start["path"], "query": start["query"], "headers": start.get("headers"), "json": start["json"]},
                "then": [{"path": r["path"], "query": r["query"], "headers": r.get("headers"), "body": r.get("body")} for r in rest],
            }


# --------------------------------------------------------------------------------------
# Putting it together: per-model acceptance rules the simulator enforces
# --------------------------------------------------------------------------------------


def compile_models(oa: dict, gm: dict) -> list[dict]:
    hw = HAND_WRITTEN
    sdk_models = oa["image_models"]["values"]
    free = oa["size_rules"]["free"]
    standard = oa["size_rules"]["standard"]["sizes"]
    sdk_shutdown = {d["model"]: d["shutdown"] for d in oa["image_models_deprecated"]["values"]}
    quality_gpt = oa["quality"]["gpt_image"]
    xhigh = set(oa["quality"]["xhigh_max_models"]) | set(hw["openai_xhigh_max_extra"])
    out = []
    for name, m in hw["openai_models"].items():
        sources = ["wire-formats.md models table", "developers.openai.com/api/docs/deprecations"]
        if name in sdk_models:
            sources.append(oa["image_models"]["source"])
        if m["status"] == "shutdown" and sdk_shutdown.get(name) not in (None, m.get("shutdown")):
            raise FixtureError(f"{name}: hand-written shutdown {m.get('shutdown')} but the SDK says {sdk_shutdown[name]}")
        if name in sdk_shutdown and m["status"] != "shutdown":
            raise FixtureError(f"{name}: the SDK lists it as shut down, the hand-written table as {m['status']}")
        if m["sizes"] == "free" and name not in free["models"] and "sizes_note" not in m:
            raise FixtureError(f"{name}: hand-written free sizes, but the SDK's size docstring does not list it")
        if name in free["models"] and m["sizes"] != "free":
            raise FixtureError(f"{name}: the SDK gives free sizes, the hand-written table {m['sizes']}")
        sizes = None
        if m["sizes"] == "free":
            sizes = {
                "kind": "free",
                "multiple_of": free["multiple_of"],
                "ratio_max": free["ratio_max"][0] / free["ratio_max"][1],
                "max_edge": free["max_edge"],
                "max_pixels": free["max_pixels"],
                "min_pixels": hw["openai_free_size_min_pixels"],
                "auto": "free" in hw["openai_auto_for"],
                "source": free["source"] + "; min_pixels hand-written",
            }
        elif m["sizes"] == "standard":
            sizes = {"kind": "list", "values": standard, "auto": "standard" in hw["openai_auto_for"], "source": oa["size_rules"]["standard"]["source"]}
        quality = None
        if name.startswith(tuple(oa["response_format"]["gpt_image_prefixes"])):
            quality = quality_gpt + (oa["quality"]["xhigh_max_values"] if name in xhigh else [])
        entry = {
            "id": name,
            "dialect": "openai",
            "status": m["status"],
            "served": m["status"] in ("active", "deprecated"),
            "shutdown": m.get("shutdown"),
            "owned_by": "system" if name.startswith(("gpt-", "dall-e")) else "openai",
            "sizes": sizes,
            "response_format": None if name.startswith(tuple(oa["response_format"]["gpt_image_prefixes"])) else oa["response_format"]["literals"],
            "quality": quality,
            "sources": sources + ([m["sizes_note"]] if "sizes_note" in m else []),
        }
        entry.update(openai_references(name, m, oa))
        out.append(entry)
    all_ratios = gm["aspect_ratio_enum"]["values"]
    all_sizes = gm["image_size_enum"]["values"]
    for name, m in hw["gemini_models"].items():
        entry = {
            "id": name,
            "dialect": "gemini",
            "status": m["status"],
            "served": m["status"] in ("active", "deprecated"),
            "shutdown": m.get("shutdown"),
            "display_name": m.get("display_name", name),
            "sources": ["ai.google.dev/gemini-api/docs/deprecations", "wire-formats.md models table"],
        }
        if m["status"] != "shutdown":
            ratios = all_ratios if m["aspect_ratios"] == "all" else m["aspect_ratios"]
            for v in ratios:
                if v not in all_ratios:
                    raise FixtureError(f"{name}: aspect ratio {v!r} is not in the SDK's AspectRatio enum")
            for v in m["image_sizes"]:
                if v not in all_sizes:
                    raise FixtureError(f"{name}: image size {v!r} is not in the SDK's ImageSize enum")
            entry["image_sizes"] = m["image_sizes"]
            entry["aspect_ratios"] = ratios
            entry["sources"].append(gm["aspect_ratio_enum"]["source"] + "; per-model subsets hand-written")
        entry.update(gemini_references(name, m))
        out.append(entry)
    for name, m in hw["aggregator_models"].items():
        out.append({
            "id": name,
            "dialect": "openai",
            "aggregator": True,
            "status": m["status"],
            "served": True,
            "shutdown": None,
            "owned_by": "aggregator",
            "sizes": {"kind": "list", "values": m["sizes"], "auto": False, "source": "wire-formats.md models table"},
            "response_format": m["response_format"],
            "quality": None,
            "sources": ["wire-formats.md models table (the seeds' aggregator)"],
            **aggregator_references(name, oa),
        })
    return out


NO_REFERENCES = {"edits": False, "max_reference_images": 0, "reference_formats": [], "max_reference_bytes": None, "mask": None}


def openai_references(name: str, m: dict, oa: dict) -> dict:
    """What an OpenAI model takes on /v1/images/edits, from the SDK's edit docstrings."""
    e = oa["edits"]
    mb = HAND_WRITTEN["references"]["openai_mb"]
    in_model_doc = name in e["models"]["values"]
    in_image_doc = name in e["image_models"]["values"]
    if m["status"] == "shutdown":
        if in_model_doc:
            raise FixtureError(f"{name}: shut down by the hand-written table, but the SDK's edit model list names it")
        return {**NO_REFERENCES, "references_source": "shut down"}
    if not in_model_doc and not in_image_doc:
        snapshot_of = next((b for b in e["models"]["values"] if name.startswith(b + "-")), None)
        if snapshot_of is None:
            return {**NO_REFERENCES, "references_source": f"not in {e['models']['source']}"}
    note = "" if in_image_doc else "; not in the image docstring's list of GPT image models, which predates it: the GPT image models' constraints assumed"
    return {
        "edits": True,
        "max_reference_images": e["max_images"]["value"],
        "reference_formats": e["formats"]["mime_types"],
        "max_reference_bytes": e["max_mb"]["value"] * mb,
        "mask": {
            "formats": e["mask"]["mime_types"],
            "max_bytes": e["mask"]["max_mb"] * mb,
            "applies_to_first_image": e["mask"]["applies_to_first_image"],
        },
        "references_source": f"{e['max_images']['source']}; {e['mask']['source']}; MB taken as MiB (hand-written){note}",
    }


def gemini_references(name: str, m: dict) -> dict:
    r = HAND_WRITTEN["references"]
    if m["status"] == "shutdown":
        return {**NO_REFERENCES, "references_source": "shut down"}
    limits = r["gemini_models"].get(name)
    if limits is None:
        raise FixtureError(f"{name}: served, but HAND_WRITTEN references.gemini_models gives no reference limit")
    for mime in ["image/png", "image/jpeg"]:
        if mime not in r["gemini_mime_types"]:
            raise FixtureError(f"references.gemini_mime_types lacks {mime}")
    return {
        "edits": False,
        "max_reference_images": limits["max_reference_images"],
        "reference_formats": r["gemini_mime_types"],
        # Per reference through the Files API; inline references share the request bound.
        "max_reference_bytes": r["gemini_file_max_bytes"],
        "max_request_bytes": r["gemini_inline_request_max_bytes"],
        "file_ttl_hours": r["gemini_file_ttl_hours"],
        "mask": None,
        "references_source": "hand-written references (ai.google.dev image understanding and files docs; docs.cloud.google.com image understanding: 14 images per prompt)",
    }


def aggregator_references(name: str, oa: dict) -> dict:
    a = HAND_WRITTEN["references"]["aggregator_models"].get(name)
    if a is None or not a["edits"]:
        return {**NO_REFERENCES, "references_source": "hand-written: no edits known"}
    e = oa["edits"]
    for mime in a["formats"]:
        if mime not in e["formats"]["mime_types"]:
            raise FixtureError(f"{name}: hand-written edit format {mime} is not one the OpenAI edit endpoint takes")
    if a["max_reference_images"] > e["max_images"]["value"]:
        raise FixtureError(f"{name}: hand-written {a['max_reference_images']} images, above the OpenAI edit endpoint's {e['max_images']['value']}")
    return {
        "edits": True,
        "max_reference_images": a["max_reference_images"],
        "reference_formats": a["formats"],
        "max_reference_bytes": e["max_mb"]["value"] * HAND_WRITTEN["references"]["openai_mb"],
        "mask": None if not a["mask"] else {"formats": e["mask"]["mime_types"], "max_bytes": e["mask"]["max_mb"] * HAND_WRITTEN["references"]["openai_mb"], "applies_to_first_image": True},
        "references_source": "hand-written references.aggregator_models: " + a["note"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--inside-venv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.inside_venv:
        bootstrap(args)
        return

    from importlib.metadata import version

    for name, pin in PINS.items():
        got = version(name)
        if got != pin:
            raise FixtureError(f"{name} {got} is installed, {pin} is pinned")

    oa = openai_facts()
    gm = genai_facts()
    fixtures = {
        "generated": {
            "date": _dt.date.today().isoformat(),
            "by": "tests/sdk/generate.py",
            "python": sys.version.split()[0],
            "note": "Do not edit by hand: change generate.py (HAND_WRITTEN for facts the SDKs lack) and rerun it.",
        },
        "sdk": {name: {"version": version(name), "source": f"pip install {name}=={pin}"} for name, pin in PINS.items()},
        "openai": oa,
        "gemini": gm,
        "requests": record_requests(),
        "hand_written": HAND_WRITTEN,
        "models": compile_models(oa, gm),
    }
    args.out.write_text(json.dumps(fixtures, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} ({len(fixtures['models'])} models)")


if __name__ == "__main__":
    main()
