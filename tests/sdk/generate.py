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
    # The Batch APIs (fixtures: `batch.hand_written`; kept out of the top-level
    # `hand_written` so the older sections stay as they were). Everything the SDKs carry
    # (endpoints, windows, metadata and file limits, statuses, state names) is extracted
    # in batch_facts() instead.
    "batch": {
        # wire-formats.md, "Gemini Batch API": "EXPIRED (pending or running over 48 h) has
        # no results"; "At most 100 concurrent jobs, 2 GB input file"; "Results are kept 6
        # weeks". GB taken as GiB, as for the Files API above.
        "gemini_expiry_hours": 48,
        "gemini_max_concurrent_jobs": 100,
        "gemini_input_max_bytes": 2 * 1024 ** 3,
        "gemini_results_kept_days": 42,
        # ListBatches' page size: the REST reference says only "the standard list page
        # size"; no default or maximum is published. Invented: 10 when none is asked, 100
        # at most (what other Google list methods cap at).
        "gemini_list_page_default": 10,
        "gemini_list_page_max": 100,
        "gemini_list_page_note": "invented: no public default or maximum",
        # OpenAI's Batch API guide (developers.openai.com/api/docs/guides/batch, "Batch
        # expiration"): unfinished requests of an expired batch go to the error file as
        # {"id": "batch_req_123", "custom_id": "request-3", "response": null, "error":
        # {"code": "batch_expired", "message": "This request could not be executed before
        # the completion window expired."}}; responses of completed requests stay in the
        # output file. "Note that each input file can only include requests to a single
        # model" (same guide, step 1). The request-output error codes `batch_expired` and
        # `batch_cancelled` ("The batch was cancelled before this request executed") are
        # OpenAI's BatchRequestOutputError (openapi spec, as generated into
        # openai-client-base 0.8.1 docs/BatchRequestOutputError.md).
        "openai_expired_line_error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
        "openai_cancelled_line_error": {"code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."},
        "openai_cancelled_line_note": "code from the spec; message text invented from the spec's description",
        # Input-file validation: a file with bad lines still makes a batch, which then
        # goes `failed` with errors.data[] = {code, message, param, line} (stdapi-ai/
        # stdapi.ai#240: documented codes invalid_json_line, duplicate_custom_id,
        # url_mismatch, model_mismatch, empty_file, too_many_tasks; observed
        # BatchError(code="invalid_json_line", line=1, message="This line is not parseable
        # as valid JSON."); "Even file-access failures come back as failed rather than a
        # create-time 400"). Messages other than invalid_json_line's are not public: the
        # duplicate one is as widely quoted, the rest are the simulator's.
        "openai_validation_errors": {
            "invalid_json_line": "This line is not parseable as valid JSON.",
            "duplicate_custom_id": "The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each individual request in a batch.",
            "url_mismatch": "The provided URL '{url}' does not match the batch's endpoint '{endpoint}'.",
            "model_mismatch": "The provided model '{model}' does not match the model of the other requests in this file ('{first}'). Each input file can only include requests to a single model.",
            "empty_file": "The input file is empty.",
            "too_many_tasks": "The input file contains {got} requests; the maximum is {max}.",
            "missing_field": "Missing required parameter: '{param}'.",
            "invalid_method": "The method '{method}' is not supported; use 'POST'.",
        },
        "openai_validation_errors_note": "codes documented (stdapi-ai/stdapi.ai#240); messages other than invalid_json_line and duplicate_custom_id invented; missing_field and invalid_method are the simulator's",
        # Over-size input: files.create answers 400 at upload (bespokelabsai/curator#111:
        # "Error code: 400 - {'error': {'message': 'File is too large.', 'type':
        # 'invalid_request_error', 'param': None, 'code': None}}"); a batch file whose name
        # is not .jsonl: "Invalid file format for Batch API. Must be .jsonl" (BerriAI/
        # litellm#37527, the body OpenAI returned). Malformed lines are accepted at upload
        # (same PR: a file of lines missing "method" is "processed").
        "errors": {
            "openai_file_too_large": {
                "status": 400,
                "body": {"error": {"message": "File is too large.", "type": "invalid_request_error", "param": None, "code": None}},
            },
            "openai_batch_not_jsonl": {
                "status": 400,
                "body": {"error": {"message": "Invalid file format for Batch API. Must be .jsonl", "type": "invalid_request_error", "param": None, "code": None}},
            },
            # Over the metadata limits: no public text; OpenAI's validation shape (as its
            # array_above_max_length above), with `object_above_max_properties` /
            # `string_above_max_length`.
            "openai_metadata_too_many": {
                "status": 400,
                "body": {"error": {"message": "Invalid 'metadata': too many properties. Expected an object with at most {max} properties, but got an object with {got} properties instead.", "type": "invalid_request_error", "param": "metadata", "code": "object_above_max_properties"}},
                "note": "real text unknown; OpenAI's validation shape",
            },
            "openai_metadata_too_long": {
                "status": 400,
                "body": {"error": {"message": "Invalid 'metadata{path}': string too long. Expected a string with maximum length {max}, but got a string with length {got} instead.", "type": "invalid_request_error", "param": "metadata{path}", "code": "string_above_max_length"}},
                "note": "real text unknown; OpenAI's validation shape",
            },
            # An unknown file id: OpenAI's "No such File object" (its files.retrieve text).
            "openai_no_such_file": {
                "status": 404,
                "body": {"error": {"message": "No such File object: {id}", "type": "invalid_request_error", "param": "{param}", "code": None}},
            },
            "openai_no_such_batch": {
                "status": 404,
                "body": {"error": {"message": "No batch found with id '{id}'.", "type": "invalid_request_error", "param": None, "code": None}},
                "note": "real text unknown",
            },
            "openai_batch_wrong_purpose": {
                "status": 400,
                "body": {"error": {"message": "The input file {id} must be uploaded with purpose 'batch', not '{purpose}'.", "type": "invalid_request_error", "param": "input_file_id", "code": None}},
                "note": "real text unknown",
            },
            "openai_cannot_cancel": {
                "status": 400,
                "body": {"error": {"message": "Cannot cancel a batch with status '{status}'.", "type": "invalid_request_error", "param": None, "code": None}},
                "note": "real text unknown",
            },
            # The enqueued-work limit: the batch is made, then fails at validation with
            # token_limit_exceeded ("Enqueued token limit reached for gpt-4.1 in
            # organization org-123. Limit: 900,000 enqueued tokens.", quoted in several
            # public clients' tests). OpenAI limits enqueued tokens, not jobs: the
            # simulator counts jobs in flight instead (max_batch_jobs).
            "openai_queue_full": {
                "code": "token_limit_exceeded",
                "message": "Enqueued token limit reached for {model} in organization org-sim. Limit: {max} batches in flight. Please try again once some in_progress batches have been completed.",
                "note": "code and first sentence as observed; the limit sentence is the simulator's (it counts batches, not tokens)",
            },
            "openai_job_failed": {
                "code": "batch_failed",
                "message": "The batch failed.",
                "note": "invented: the simulator's fail_jobs knob",
            },
            # Gemini: creating a batch over the project's batch limits answers 429
            # RESOURCE_EXHAUSTED (langchain4j/langchain4j#3942 and googleapis/js-genai#1264,
            # both on batch creation).
            "gemini_batch_quota": {
                "status": 429,
                "body": {"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}]}},
            },
            # A job's own error (BatchJob.error: JobError {code, message, details}, "Only
            # populated when the job's state is JOB_STATE_FAILED or JOB_STATE_CANCELLED";
            # google.rpc.Status codes: 1 CANCELLED, 3 INVALID_ARGUMENT, 13 INTERNAL, the
            # cancelled code as google.longrunning's CancelOperation documents it).
            "gemini_job_bad_input": {"code": 3, "message": "Invalid input file {file}: line {line}: {why}", "note": "text invented"},
            "gemini_job_failed": {"code": 13, "message": "The batch failed.", "note": "text invented: the simulator's fail_jobs knob"},
            "gemini_job_cancelled": {"code": 1, "message": "The batch was cancelled.", "note": "code from google.longrunning; text invented"},
            "gemini_download_uploaded": {
                "status": 400,
                "body": {"error": {"code": 400, "message": "Only generated files can be downloaded; files/{id} was uploaded.", "status": "INVALID_ARGUMENT"}},
                "note": "the SDK's rule (files.download: 'Only generated files can be downloaded, uploaded files can't be downloaded'); text invented",
            },
            "gemini_no_such_batch": {
                "status": 404,
                "body": {"error": {"code": 404, "message": "Batch batches/{id} not found.", "status": "NOT_FOUND"}},
                "note": "real text unknown",
            },
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
# The Batch APIs: rules from the SDKs' types and docstrings
# --------------------------------------------------------------------------------------


def getv_paths(fn) -> list[list[str]]:
    """The `getv(from_object, [...])` paths a google-genai converter reads, in order."""
    out = []
    for m in re.finditer(r"getv\(\s*from_object,\s*(\[[^\]]*\])\s*\)", inspect.getsource(fn)):
        path = ast.literal_eval(m.group(1))
        if path not in out:
            out.append(path)
    return out


def setv_paths(fn) -> list[list[str]]:
    """The `setv(..., [...], ...)` paths a google-genai converter writes, in order."""
    out = []
    for m in re.finditer(r"setv\(\s*\w+,\s*(\[[^\]]*\])", inspect.getsource(fn)):
        path = ast.literal_eval(m.group(1))
        if path not in out:
            out.append(path)
    return out


def batch_facts() -> dict:
    import typing_extensions
    from openai.resources import batches as oa_batches
    from openai.resources import files as oa_files
    from openai.types import batch as oa_batch
    from openai.types import batch_create_params, batch_list_params, file_create_params, file_object, file_purpose

    # --- openai -------------------------------------------------------------------------
    src_create = "openai/types/batch_create_params.py"
    hints = typing_extensions.get_type_hints(batch_create_params.BatchCreateParams)
    docs = attribute_docs(batch_create_params, "BatchCreateParams")
    endpoints = literal_values(hints["endpoint"])
    windows = literal_values(hints["completion_window"])
    for needed in ["/v1/images/generations", "/v1/images/edits"]:
        if needed not in endpoints:
            raise FixtureError(f"{src_create}: BatchCreateParams.endpoint lost {needed}")
    meta = must(r"Set of (\d+) key-value pairs that can be attached to an object.*Keys are strings with a maximum length of (\d+) characters\. Values are strings with a maximum length of (\d+) characters", docs["metadata"], "metadata limits")
    input_limits = must(r"must be uploaded with the purpose `(\w+)`\. The file can contain up to ([\d,]+) requests, and can be up to (\d+) MB in size", docs["input_file_id"], "input file limits")
    status = literal_values(oa_batch.Batch.model_fields["status"].annotation)
    for needed in ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"]:
        if needed not in status:
            raise FixtureError(f"openai/types/batch.py: Batch.status lost {needed!r}")
    list_docs = attribute_docs(batch_list_params, "BatchListParams")
    limit = must(r"Limit can range between (\d+) and (\d+), and the default is (\d+)", list_docs["limit"], "batches.list limit")
    cancel_doc = inspect.getdoc(oa_batches.Batches.cancel) or ""
    cancelling = must(r"in status `cancelling` for up to (\d+) minutes, before changing to `cancelled`, where it will have partial results \(if any\) available in the output file", cancel_doc, "batches.cancel docstring")
    purposes = list(typing.get_args(file_purpose.FilePurpose))
    object_purposes = literal_values(file_object.FileObject.model_fields["purpose"].annotation)
    object_status = literal_values(file_object.FileObject.model_fields["status"].annotation)
    create_doc = inspect.getdoc(oa_files.Files.create) or ""
    file_max = must(r"Individual files can be up to (\d+) MB", create_doc, "files.create per-file limit")
    batch_file = must(r"The Batch API only supports `\.(jsonl)` files up to (\d+) MB in size", create_doc, "files.create Batch API file rule")
    fc_docs = attribute_docs(file_create_params, "FileCreateParams")
    batch_ttl = must(r"files with `purpose=batch` expire after (\d+) days", fc_docs["expires_after"], "batch file expiry")
    if int(batch_file.group(2)) != int(input_limits.group(3)):
        raise FixtureError("the Batch API's file size differs between files.create and batches.create")
    mb = HAND_WRITTEN["references"]["openai_mb"]
    openai = {
        "endpoints": {"values": endpoints, "source": f"{src_create} BatchCreateParams.endpoint (Literal)"},
        "completion_windows": {"values": windows, "source": f"{src_create} BatchCreateParams.completion_window (Literal)"},
        "metadata": {
            "max_pairs": int(meta.group(1)),
            "max_key_chars": int(meta.group(2)),
            "max_value_chars": int(meta.group(3)),
            "text": meta.group(0),
            "source": f"{src_create} BatchCreateParams.metadata (docstring); openai/types/shared_params/metadata.py: Dict[str, str]",
        },
        "input_file": {
            "purpose": input_limits.group(1),
            "max_requests": int(input_limits.group(2).replace(",", "")),
            "max_mb": int(input_limits.group(3)),
            "max_bytes": int(input_limits.group(3)) * mb,
            "format": batch_file.group(1),
            "text": [input_limits.group(0), batch_file.group(0)],
            "source": f"{src_create} BatchCreateParams.input_file_id (docstring); openai/resources/files.py Files.create (docstring); MB taken as MiB (hand-written references.openai_mb)",
        },
        "statuses": {"values": status, "source": "openai/types/batch.py Batch.status (Literal)"},
        "list_limit": {"min": int(limit.group(1)), "max": int(limit.group(2)), "default": int(limit.group(3)), "source": "openai/types/batch_list_params.py BatchListParams.limit (docstring)"},
        "cancelling_max_minutes": {"value": int(cancelling.group(1)), "text": cancelling.group(0), "source": "openai/resources/batches.py Batches.cancel (docstring)"},
        "file_purposes": {"values": purposes, "source": "openai/types/file_purpose.py FilePurpose (Literal)"},
        "file_object_purposes": {"values": object_purposes, "source": "openai/types/file_object.py FileObject.purpose (Literal)"},
        "file_object_statuses": {"values": object_status, "source": "openai/types/file_object.py FileObject.status (Literal)"},
        "file_max_bytes": {"value": int(file_max.group(1)) * mb, "text": file_max.group(0), "source": "openai/resources/files.py Files.create (docstring); MB taken as MiB"},
        "batch_file_ttl_days": {"value": int(batch_ttl.group(1)), "source": "openai/types/file_create_params.py FileCreateParams.expires_after (docstring)"},
        "batch_fields": {"values": list(oa_batch.Batch.model_fields), "source": "openai/types/batch.py Batch (fields)"},
        "file_object_fields": {"values": list(file_object.FileObject.model_fields), "source": "openai/types/file_object.py FileObject (fields)"},
    }

    # --- google-genai -------------------------------------------------------------------
    from google.genai import _transformers, batches as g_batches, files as g_files, types

    tree = ast.parse(inspect.getsource(_transformers.t_job_state))
    pairs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.comparators[0], ast.Constant):
            ret = node.body[0]
            if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                pairs.append([node.test.comparators[0].value, ret.value.value])
    if len(pairs) < 7:
        raise FixtureError(f"google/genai/_transformers.py t_job_state: only {len(pairs)} state pairs found")
    job_states = [m.value for m in types.JobState]
    for rest, sdk in pairs:
        if sdk not in job_states:
            raise FixtureError(f"t_job_state maps {rest} to {sdk}, which is not in types.JobState")
    from_mldev = getv_paths(g_batches._BatchJob_from_mldev)
    for needed in [["name"], ["metadata", "displayName"], ["metadata", "state"], ["metadata", "output"]]:
        if needed not in from_mldev:
            raise FixtureError(f"google/genai/batches.py _BatchJob_from_mldev no longer reads {needed}")
    dest = getv_paths(g_batches._BatchJobDestination_from_mldev)
    if ["responsesFile"] not in dest:
        raise FixtureError("google/genai/batches.py _BatchJobDestination_from_mldev no longer reads responsesFile")
    list_keys = getv_paths(g_batches._ListBatchJobsResponse_from_mldev)
    for needed in [["operations"], ["nextPageToken"]]:
        if needed not in list_keys:
            raise FixtureError(f"google/genai/batches.py _ListBatchJobsResponse_from_mldev no longer reads {needed}")
    list_query = setv_paths(g_batches._ListBatchJobsConfig_to_mldev)
    create_body = setv_paths(g_batches._CreateBatchJobParameters_to_mldev) + setv_paths(g_batches._CreateBatchJobConfig_to_mldev)
    source_body = setv_paths(g_batches._BatchJobSource_to_mldev)
    batches_src = inspect.getsource(g_batches.Batches)
    paths = {
        name: must(pattern, batches_src, f"Batches path {name}").group(1)
        for name, pattern in {
            "create": r"path = '(\{model\}:batchGenerateContent)'",
            "get": r"path = '(batches/\{name\})'",
            "cancel": r"path = '(batches/\{name\}:cancel)'",
            "list": r"path = '(batches)'",
        }.items()
    }
    download_src = inspect.getsource(g_files.Files.download)
    download = must(r"path = f'(files/\{name\}:download)'", download_src, "files.download path").group(1)
    must(r"query_params = \{'alt': 'media'\}", download_src, "files.download alt=media")
    ended = {"vertex": list(types.JOB_STATES_ENDED_VERTEX), "mldev": list(types.JOB_STATES_ENDED_MLDEV)}
    error_doc = one_line(types.BatchJob.model_fields["error"].description or "")
    gemini = {
        "state_names": {
            "rest_to_sdk": pairs,
            "note": "the REST API answers BATCH_STATE_*; the SDK maps them to JOB_STATE_* (unknown names pass through)",
            "source": "google/genai/_transformers.py t_job_state",
        },
        "job_states": {"values": job_states, "source": "google/genai/types.py JobState (enum)"},
        "job_states_ended": {"values": ended, "source": "google/genai/types.py JOB_STATES_ENDED_VERTEX / JOB_STATES_ENDED_MLDEV (BatchJob.done)"},
        "batch_job_reads": {
            "values": from_mldev,
            "destination_reads": dest,
            "note": "the SDK reads the batch from the operation's metadata (displayName, state, times, model, output) and the result file from metadata.output.responsesFile; it reads neither batchStats nor done nor error",
            "source": "google/genai/batches.py _BatchJob_from_mldev, _BatchJobDestination_from_mldev",
        },
        "batch_job_error": {"text": error_doc, "source": "google/genai/types.py BatchJob.error (JobError: code, message, details)"},
        "list_response_reads": {"values": list_keys, "source": "google/genai/batches.py _ListBatchJobsResponse_from_mldev"},
        "list_query": {"values": list_query, "source": "google/genai/batches.py _ListBatchJobsConfig_to_mldev"},
        "create_body_writes": {"values": create_body + [["batch", "inputConfig"] + p for p in source_body if p[0] != "_url"], "source": "google/genai/batches.py _CreateBatchJobParameters_to_mldev, _CreateBatchJobConfig_to_mldev, _BatchJobSource_to_mldev"},
        "paths": {"values": {**paths, "download": download + "?alt=media"}, "note": "relative to {base}/{api_version}/", "source": "google/genai/batches.py Batches.*, google/genai/files.py Files.download"},
    }
    return {"openai": openai, "gemini": gemini}


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
# The Batch APIs: requests the SDKs really send, recorded on 127.0.0.1
# --------------------------------------------------------------------------------------

BATCH_TOKEN = "t0k3n"
GEMINI_RESULT_LINE = {"key": "row-1", "response": {"candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_1PX}}]}, "finishReason": "STOP", "index": 0}]}}
OPENAI_RESULT_LINE = {"id": "batch_req_1", "custom_id": "row-1", "response": {"status_code": 200, "request_id": "req_1", "body": {"created": 1776729600, "data": [{"b64_json": PNG_1PX}]}}, "error": None}


def gemini_batch(name: str, state: str, done: bool = False) -> dict:
    """A batch operation as the REST API answers it (the shape the simulator serves)."""
    op = {
        "name": name,
        "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "model": "models/gemini-3-pro-image",
            "displayName": f"bulkgen-{BATCH_TOKEN}",
            "createTime": "2026-11-24T10:00:00.000000Z",
            "updateTime": "2026-11-24T10:00:00.000000Z",
            "batchStats": {"requestCount": "1", "pendingRequestCount": "1"},
            "state": state,
            "name": name,
        },
    }
    if done:
        op["metadata"]["output"] = {"responsesFile": "files/batch-results-1"}
        op["metadata"]["batchStats"] = {"requestCount": "1", "successfulRequestCount": "1"}
        op["done"] = True
        op["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput", "responsesFile": "files/batch-results-1"}
    return op


def openai_batch(batch_id: str, endpoint: str, status: str) -> dict:
    return {
        "id": batch_id, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": "file-input1",
        "completion_window": "24h", "status": status, "output_file_id": "file-output1" if status == "completed" else None,
        "error_file_id": None, "created_at": 1795687200, "in_progress_at": None, "expires_at": 1795773600,
        "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
        "cancelled_at": None, "request_counts": {"total": 1, "completed": 1 if status == "completed" else 0, "failed": 0},
        "metadata": {"bulkgen_token": BATCH_TOKEN}, "model": "gpt-image-2",
    }


class BatchRecorder(Recorder):
    """The recorder, answering the Batch and Files endpoints as well."""

    def _bytes(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        gemini = self.headers.get("x-goog-api-key") is not None
        version, _, rest = parts.path.lstrip("/").partition("/")
        if gemini and rest.endswith(":download"):
            self._record(None)
            self._bytes((json.dumps(GEMINI_RESULT_LINE) + "\n").encode(), "application/octet-stream")
        elif gemini and rest == "batches":
            self._record(None)
            # Two pages, so the SDK's pager shows how it sends the page token.
            if "pageToken" in query:
                self._reply({"operations": [gemini_batch("batches/sim-batch-1", "BATCH_STATE_SUCCEEDED", done=True)]})
            else:
                self._reply({"operations": [gemini_batch("batches/sim-batch-2", "BATCH_STATE_PENDING")], "nextPageToken": "page-2"})
        elif gemini and rest.startswith("batches/"):
            self._record(None)
            self._reply(gemini_batch(rest, "BATCH_STATE_SUCCEEDED", done=True))
        elif rest.endswith("/content") and rest.startswith("files/"):
            self._record(None)
            self._bytes((json.dumps(OPENAI_RESULT_LINE) + "\n").encode(), "application/octet-stream")
        elif rest == "batches":
            self._record(None)
            if "after" in query:
                self._reply({"object": "list", "data": [openai_batch("batch_1", "/v1/images/generations", "completed")], "first_id": "batch_1", "last_id": "batch_1", "has_more": False})
            else:
                self._reply({"object": "list", "data": [openai_batch("batch_2", "/v1/images/edits", "validating")], "first_id": "batch_2", "last_id": "batch_2", "has_more": True})
        elif rest.startswith("batches/"):
            self._record(None)
            self._reply(openai_batch(rest.split("/", 1)[1], "/v1/images/generations", "completed"))
        else:
            super().do_GET()

    def do_POST(self):
        path = urlsplit(self.path).path
        version, _, rest = path.lstrip("/").partition("/")
        if rest.endswith(":batchGenerateContent"):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            self._record(json.loads(raw) if raw else None)
            self._reply(gemini_batch("batches/sim-batch-1", "BATCH_STATE_PENDING"))
        elif rest.startswith("batches/") and rest.endswith(":cancel"):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            self._record(json.loads(raw) if raw else None)
            self._reply({})
        elif rest == "files":
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            parts = multipart_parts(self.headers.get("content-type") or "", raw)
            self._record(None, {"multipart": parts})
            file = next(p for p in parts if p["filename"] is not None)
            purpose = next(p["value"] for p in parts if p["name"] == "purpose")
            self._reply({"id": "file-input1", "object": "file", "bytes": file["len"], "created_at": 1795687200, "filename": file["filename"], "purpose": purpose, "status": "processed", "expires_at": 1798279200, "status_details": None})
        elif rest == "batches":
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw)
            self._record(body)
            self._reply(openai_batch("batch_1", body["endpoint"], "validating"))
        elif rest.startswith("batches/") and rest.endswith("/cancel"):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            self._record(json.loads(raw) if raw else None)
            self._reply(openai_batch(rest.split("/")[1], "/v1/images/generations", "cancelling"))
        else:
            super().do_POST()


def record_batch_requests() -> dict:
    import openai
    from google import genai
    from google.genai import types

    server = ThreadingHTTPServer(("127.0.0.1", 0), BatchRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
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

    tmp = Path(tempfile.mkdtemp(prefix="bulkgen-sdk-batch-"))
    line = {"custom_id": "row-1", "method": "POST", "url": "/v1/images/generations", "body": {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024"}}
    jsonl = (json.dumps(line) + "\n").encode()
    try:
        oa = openai.OpenAI(api_key=DUMMY_KEY, base_url=root + "/v1", max_retries=0)
        where = f"openai {openai.__version__}, base_url={{base}}/v1"
        (tmp / "batch.jsonl").write_bytes(jsonl)
        (tmp / "ref1.png").write_bytes(PNG_REF)

        def upload_opened():
            with open(tmp / "batch.jsonl", "rb") as f:
                oa.files.create(file=f, purpose="batch")

        def upload_vision():
            with open(tmp / "ref1.png", "rb") as f:
                oa.files.create(file=f, purpose="vision")

        take("openai.files.create@batch", 'client.files.create(file=open("batch.jsonl", "rb"), purpose="batch")', where + f"; batch.jsonl {digest(jsonl)}", upload_opened)
        take("openai.files.create@tuple", 'client.files.create(file=("batch.jsonl", JSONL_BYTES, "application/jsonl"), purpose="batch")', where, lambda: oa.files.create(file=("batch.jsonl", jsonl, "application/jsonl"), purpose="batch"))
        take("openai.files.create@vision", 'client.files.create(file=open("ref1.png", "rb"), purpose="vision")', where + f"; ref1.png {digest(PNG_REF)}", upload_vision)
        for endpoint in ["/v1/images/generations", "/v1/images/edits"]:
            take(
                f"openai.batches.create@{endpoint.rsplit('/', 1)[1]}",
                f'client.batches.create(input_file_id="file-input1", endpoint="{endpoint}", completion_window="24h", metadata={{"bulkgen_token": "{BATCH_TOKEN}"}})',
                where,
                lambda endpoint=endpoint: oa.batches.create(input_file_id="file-input1", endpoint=endpoint, completion_window="24h", metadata={"bulkgen_token": BATCH_TOKEN}),
            )
        take("openai.batches.retrieve", 'client.batches.retrieve("batch_1")', where, lambda: oa.batches.retrieve("batch_1"))
        take("openai.batches.list", "list(client.batches.list(limit=1))  # the recorder answers two pages", where, lambda: list(oa.batches.list(limit=1)))
        take("openai.batches.cancel", 'client.batches.cancel("batch_1")', where, lambda: oa.batches.cancel("batch_1"))
        take("openai.files.content", 'client.files.content("file-output1").read()', where, lambda: oa.files.content("file-output1").read())

        for label, options in [
            ("", types.HttpOptions(base_url=root)),
            ("@v1beta", types.HttpOptions(base_url=root, api_version="v1beta")),
        ]:
            gc = genai.Client(api_key=DUMMY_KEY, http_options=options)
            where = f"google-genai {genai.__version__}, http_options=HttpOptions(base_url={{base}}" + (", api_version='v1beta')" if label else ") (the SDK's default API version)")
            take(
                "genai.batches.create" + label,
                f'client.batches.create(model="gemini-3-pro-image", src="files/input-1", config={{"display_name": "bulkgen-{BATCH_TOKEN}"}})',
                where,
                lambda: gc.batches.create(model="gemini-3-pro-image", src="files/input-1", config={"display_name": f"bulkgen-{BATCH_TOKEN}"}),
            )
            take("genai.batches.get" + label, 'client.batches.get(name="batches/sim-batch-1")', where, lambda: gc.batches.get(name="batches/sim-batch-1"))
            take("genai.batches.list" + label, 'list(client.batches.list(config={"page_size": 1}))  # the recorder answers two pages', where, lambda: list(gc.batches.list(config={"page_size": 1})))
            take("genai.batches.cancel" + label, 'client.batches.cancel(name="batches/sim-batch-1")', where, lambda: gc.batches.cancel(name="batches/sim-batch-1"))
            take("genai.files.download" + label, 'client.files.download(file="files/batch-results-1")', where, lambda: gc.files.download(file="files/batch-results-1"))
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    for name, rec in recorded.items():
        if name.startswith("openai.files.create"):
            parts = rec["requests"][0]["multipart"]
            rec["observed"] = {
                "part_names_in_order": [p["name"] for p in parts],
                "file_part": next({k: p[k] for k in ("name", "filename", "content_type")} for p in parts if p["filename"] is not None),
            }
        elif name.startswith("genai.batches.create"):
            rec["observed"] = {"path": rec["requests"][0]["path"], "body": rec["requests"][0]["json"]}
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
        # HAND_WRITTEN["batch"] goes with the rest of the Batch APIs' facts, below.
        "hand_written": {k: v for k, v in HAND_WRITTEN.items() if k != "batch"},
        "models": compile_models(oa, gm),
        "batch": {
            "note": "The Batch APIs and OpenAI's Files API: rules extracted from the SDKs (openai, gemini), the requests they send (requests), and what they do not carry (hand_written, from HAND_WRITTEN['batch'] in generate.py).",
            **batch_facts(),
            "requests": record_batch_requests(),
            "hand_written": HAND_WRITTEN["batch"],
        },
    }
    args.out.write_text(json.dumps(fixtures, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} ({len(fixtures['models'])} models)")


if __name__ == "__main__":
    main()
