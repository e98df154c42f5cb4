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
import datetime as _dt
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import typing
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
        for name in ["model", "prompt", "size", "response_format", "quality", "output_format", "background", "moderation", "n", "output_compression", "style", "input_fidelity"]:
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
    }


# --------------------------------------------------------------------------------------
# Requests the SDKs really send, recorded on 127.0.0.1
# --------------------------------------------------------------------------------------

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


class Recorder(BaseHTTPRequestHandler):
    log: list = []

    def log_message(self, *args):  # quiet
        pass

    def _record(self, body):
        parts = urlsplit(self.path)
        auth = {}
        for name in ["authorization", "x-goog-api-key"]:
            value = self.headers.get(name)
            if value is not None:
                # Never a key in the fixture, not even the dummy one: only its shape.
                auth[name] = value.replace(DUMMY_KEY, "{KEY}")
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            "auth": auth,
            "content_type": self.headers.get("content-type"),
            "json": body,
        }
        Recorder.log.append(entry)
        return parts

    def _reply(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        parts = self._record(None)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        # google-genai and openai both GET {root}/v1/models...: tell them apart by the
        # key's header, as the simulator does.
        gemini = self.headers.get("x-goog-api-key") is not None
        version, _, rest = path.lstrip("/").partition("/")
        if gemini and rest.startswith("models/"):
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
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        parts = self._record(body)
        if parts.path.endswith("/images/generations"):
            self._reply({"created": 1776729600, "data": [{"b64_json": PNG_1PX}], "usage": {"total_tokens": 1}})
        elif ":generateContent" in parts.path:
            self._reply({
                "candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
                "modelVersion": "gemini-3-pro-image",
            })
        else:
            self._reply({"error": {"message": "not recorded"}}, 404)


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
    return recorded


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
        })
    return out


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
