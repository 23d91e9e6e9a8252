#!/usr/bin/env python3
"""structured.py BASE_URL API_KEY MODEL: response_format against `mlc serve` (tests/test_serve.sh).

json_schema with a schema whose every match is short (enums, booleans, null, const, anyOf, a nested
object, a bounded array: the grammar's bounded whitespace makes any match at most a few hundred
bytes), on /v1/chat/completions and /v1/completions, streamed and not, n = 2, several seeds, all at
once: every choice must finish with "stop" and its text must parse as JSON and validate against the
schema (python3-jsonschema when installed, and always the small validator below). json_object:
a finished reply is a JSON object; a reply cut by max_tokens starts like one.
Prints one line per failure and a summary; exit status 1 on any failure."""
import json
import sys
import threading
import urllib.request

BASE, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]

SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "size": {"anyOf": [{"const": "small"}, {"const": "large"}, {"type": "null"}]},
        "dims": {
            "type": "object",
            "properties": {
                "w": {"type": "boolean"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            },
            "required": ["w", "tags"],
            "additionalProperties": False,
        },
    },
    "required": ["color", "ok", "size", "dims"],
    "additionalProperties": False,
}


def validate(v, s, path="$"):
    """The schema subset of src/engine/grammar.h; returns an error string or None."""
    if "anyOf" in s:
        errs = [validate(v, a, path) for a in s["anyOf"]]
        return None if any(e is None for e in errs) else f"{path}: no anyOf alternative matches ({errs})"
    if "const" in s and v != s["const"]:
        return f"{path}: {v!r} != const {s['const']!r}"
    if "enum" in s and v not in s["enum"]:
        return f"{path}: {v!r} not in {s['enum']!r}"
    t = s.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        ok = {
            "object": isinstance(v, dict), "array": isinstance(v, list), "string": isinstance(v, str),
            "boolean": isinstance(v, bool), "null": v is None,
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
            "integer": isinstance(v, int) and not isinstance(v, bool),
        }
        if not any(ok[x] for x in types):
            return f"{path}: {v!r} is not of type {t}"
    if isinstance(v, dict):
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                return f"{path}: missing required {r!r}"
        for k, x in v.items():
            if k in props:
                e = validate(x, props[k], f"{path}.{k}")
                if e:
                    return e
            elif s.get("additionalProperties", True) is False:
                return f"{path}: additional property {k!r}"
    if isinstance(v, list):
        if len(v) > s.get("maxItems", 1 << 30) or len(v) < s.get("minItems", 0):
            return f"{path}: {len(v)} items"
        for i, x in enumerate(v):
            e = validate(x, s.get("items", {}), f"{path}[{i}]")
            if e:
                return e
    return None


try:
    import jsonschema
except ImportError:
    jsonschema = None


def post(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    return urllib.request.urlopen(req, timeout=300)


def run(chat, stream, seed, rf, max_tokens, n=1):
    body = {"model": MODEL, "max_tokens": max_tokens, "seed": seed, "temperature": 1.0, "n": n, "stream": stream,
            "response_format": rf}
    if chat:
        body["messages"] = [{"role": "user", "content": "Describe a box as JSON."}]
    else:
        body["prompt"] = "A box, as JSON:"
    texts, fins = [""] * n, [None] * n
    with post("/v1/chat/completions" if chat else "/v1/completions", body) as r:
        if not stream:
            j = json.load(r)
            for c in j["choices"]:
                texts[c["index"]] = c["message"]["content"] if chat else c["text"]
                fins[c["index"]] = c["finish_reason"]
        else:
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                j = json.loads(line[6:])
                for c in j.get("choices", []):
                    i = c["index"]
                    texts[i] += (c["delta"].get("content") or "") if chat else c["text"]
                    if c.get("finish_reason"):
                        fins[i] = c["finish_reason"]
    return texts, fins


failures, checks, lock = [], [0], threading.Lock()


def fail(msg):
    with lock:
        failures.append(msg)


def schema_case(chat, stream, seed, n):
    what = f"json_schema {'chat' if chat else 'completions'} stream={stream} seed={seed} n={n}"
    try:
        texts, fins = run(chat, stream, seed, {"type": "json_schema", "json_schema": {
            "name": "box", "strict": True, "schema": SCHEMA}}, 600, n)
    except Exception as e:  # noqa: BLE001
        return fail(f"{what}: request failed: {e}")
    for t, f in zip(texts, fins):
        with lock:
            checks[0] += 1
        if f != "stop":
            return fail(f"{what}: finish_reason {f}, text {t!r}")
        try:
            v = json.loads(t)
        except ValueError as e:
            return fail(f"{what}: not JSON ({e}): {t!r}")
        err = validate(v, SCHEMA)
        if err:
            return fail(f"{what}: {err}: {t!r}")
        if jsonschema is not None:
            try:
                jsonschema.validate(v, SCHEMA)
            except jsonschema.ValidationError as e:
                return fail(f"{what}: jsonschema: {e.message}: {t!r}")


def object_case(chat, seed):
    what = f"json_object {'chat' if chat else 'completions'} seed={seed}"
    try:
        texts, fins = run(chat, False, seed, {"type": "json_object"}, 48)
    except Exception as e:  # noqa: BLE001
        return fail(f"{what}: request failed: {e}")
    t, f = texts[0], fins[0]
    with lock:
        checks[0] += 1
    if f == "stop":
        try:
            if not isinstance(json.loads(t), dict):
                fail(f"{what}: not an object: {t!r}")
        except ValueError as e:
            fail(f"{what}: not JSON ({e}): {t!r}")
    elif f == "length":
        if not t.lstrip().startswith("{"):
            fail(f"{what}: does not start an object: {t!r}")
    else:
        fail(f"{what}: finish_reason {f}")


jobs = []
for seed in range(1, 4):
    for chat in (True, False):
        for stream in (False, True):
            jobs.append(threading.Thread(target=schema_case, args=(chat, stream, seed, 2 if seed == 1 else 1)))
    jobs.append(threading.Thread(target=object_case, args=(seed % 2 == 0, seed)))
for j in jobs:
    j.start()
for j in jobs:
    j.join()
for f in failures:
    print("FAIL " + f)
print(f"structured.py: {checks[0]} outputs checked, {len(failures)} failures"
      f"{'' if jsonschema else ' (python3-jsonschema not installed: own validator only)'}")
sys.exit(1 if failures else 0)
