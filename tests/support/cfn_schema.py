"""Validate Pulumi aws-native resource inputs against CloudFormation schemas.

The aws-native provider is generated from the CloudFormation registry schemas,
so the inputs a Pulumi program hands to an ``aws-native:<module>:<Resource>``
resource must satisfy the schema of ``AWS::<Service>::<Resource>``.  The
schemas used here are the ones bundled with cfn-lint
(``cfnlint/data/schemas``), i.e. exactly the version pinned in
requirements-dev.txt, so no network access is needed.

Typical use inside a ``pulumi.runtime.Mocks`` implementation::

    def new_resource(self, args):
        if args.typ.startswith("aws-native:"):
            assert validate_native(args.typ, args.inputs) == []
        ...

Public API
----------
``validate_native(type_token, inputs) -> list[str]``
    Human-readable errors, empty when the inputs are valid.
``to_cfn_properties(type_token, inputs) -> dict``
    The inputs converted to CloudFormation property names (what is validated).
``create_only_properties(type_token) -> list[str]``
    ``createOnlyProperties`` as Pulumi (camelCase) paths, e.g.
    ``"creatorMlMemberAbilities"``, ``"parameters.resourceArn"``,
    ``"members[*].accountId"``.  Changing one of them replaces the resource.
``required_properties(type_token) -> list[str]``
    Top-level required inputs (camelCase), read-only properties excluded.
``read_only_properties(type_token) -> list[str]``
    ``readOnlyProperties`` as camelCase paths (outputs, never inputs).
``cfn_type_name(type_token) -> str``
    ``"aws-native:cleanrooms:Collaboration"`` -> ``"AWS::CleanRooms::Collaboration"``.
``load_schema(type_token) -> dict``
    The raw CloudFormation resource schema (cached; do not mutate).
``to_sdk_name(cfn_name) -> str``
    CloudFormation property name -> Pulumi wire name (``"KMSKeyId"`` -> ``"kmsKeyId"``).

How the inputs are interpreted
------------------------------
* Keys are the camelCase wire names that ``MockResourceArgs.inputs`` carries.
  They are mapped to CloudFormation names by walking the schema alongside the
  data, and only where the schema describes an object *with properties*
  (following ``$ref``/``allOf``/``anyOf``/``oneOf``).  Keys of free-form maps
  (``additionalProperties``/``patternProperties``, or an untyped ``object``
  such as an IAM policy document) are kept verbatim, their values are still
  walked with the map's value schema.  Names are matched case-insensitively
  against the schema's property names at each level, because Pulumi's names
  are not a simple capitalisation of the CloudFormation ones
  (``creatorMlMemberAbilities`` <-> ``CreatorMLMemberAbilities``,
  ``kmsKeyId`` <-> ``KMSKeyId``); aws-native also renames a top-level ``Id``
  input to ``awsId``.  A key that matches nothing is kept as is, so it shows
  up as an unknown property if the schema forbids additional properties.
* Unknown values: in a preview (``set_mocks(..., preview=True)``) Pulumi
  delivers not-yet-known values as ``pulumi.output.Unknown`` instances, in an
  update as ``None`` (and a raw RPC payload may contain the UNKNOWN sentinel
  string).  All three are treated as "unknown": the key (or list element) is
  skipped, i.e. not validated, and checks that its absence would trip
  (``required`` for that key, ``minItems``/``oneOf``/``anyOf`` on the
  enclosing value) are suppressed.  Consequently an input explicitly set to
  ``None`` counts as "not set" -- which is also what Pulumi sends to the
  provider.  Secret values (``{sig: secret, value: ...}`` wrappers) are
  unwrapped; integral floats (protobuf numbers) are turned into ints.
* ``readOnlyProperties`` are outputs: they are removed from the schema's
  ``properties``/``required`` before validation and setting a top-level one
  is reported as an error.
* ``pattern`` keywords written in ECMAScript/Java syntax (``\\p{L}`` ...) are
  evaluated with the ``regex`` module (a cfn-lint dependency); a pattern that
  neither ``re`` nor ``regex`` can compile is skipped.  ``format`` is not
  checked (cfn-lint's formats are custom ones like ``AWS::IAM::Role.Arn``).

Errors look like::

    $.queryLogStatus (CloudFormation: QueryLogStatus): 'ON' is not one of ['ENABLED', 'DISABLED']
    $.description (CloudFormation: Description): required property is missing
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import importlib.metadata
import importlib.util

import jsonschema
from jsonschema import ValidationError
from jsonschema.validators import extend

# Understands the \p{...} classes AWS schemas use, which `re` cannot compile.
import regex as _regex

__all__ = [
    "UnknownResourceTypeError",
    "cfn_type_name",
    "create_only_properties",
    "load_schema",
    "read_only_properties",
    "required_properties",
    "to_cfn_properties",
    "to_sdk_name",
    "validate_native",
]

# Locate cfn-lint's data without importing cfnlint (its import takes ~0.4 s).
_CFNLINT_DIR = Path(importlib.util.find_spec("cfnlint").submodule_search_locations[0])
_SCHEMA_DIR = _CFNLINT_DIR / "data" / "schemas"
_PREFERRED_REGION = "us-east-1"

# aws-native modules whose name is not the lower-cased CloudFormation service.
_MODULE_TO_SERVICE = {"configuration": "Config"}

# Top-level properties that aws-native renames (they collide with Pulumi's
# own resource attributes).  CloudFormation name -> Pulumi name.
_TOP_LEVEL_RENAMES = {"Id": "awsId"}

# Markers Pulumi uses on the wire (pulumi/runtime/rpc.py); duplicated here so
# the module does not need to import the pulumi runtime.
_UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

_MAX_REPR = 160


class UnknownResourceTypeError(ValueError):
    """The type token has no CloudFormation schema in cfn-lint's data."""


# --------------------------------------------------------------------------
# Type names and schema loading
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _provider_index() -> dict[str, tuple[str, str]]:
    """lower-cased type name -> (type name, schema file id); us-east-1 first."""
    providers = _SCHEMA_DIR / "providers"
    files = [providers / f"{_PREFERRED_REGION}.json"]
    files += sorted(p for p in providers.glob("*.json") if p not in files)
    index: dict[str, tuple[str, str]] = {}
    for path in files:
        with path.open(encoding="utf-8") as fh:
            mapping = json.load(fh)
        for type_name, file_id in mapping.items():
            index.setdefault(type_name.lower(), (type_name, file_id))
    return index


@functools.lru_cache(maxsize=None)
def _resolve_type(type_token: str) -> tuple[str, str]:
    if "::" in type_token:  # already a CloudFormation name
        candidates = [type_token]
    else:
        parts = type_token.split(":")
        if len(parts) != 3 or parts[0] != "aws-native":
            raise UnknownResourceTypeError(
                f"{type_token!r} is not an aws-native type token "
                "(expected 'aws-native:<module>:<Resource>')"
            )
        _, module, resource = parts
        services = [_MODULE_TO_SERVICE.get(module, module)]
        if module not in _MODULE_TO_SERVICE:
            services.append(module)
        resources = [resource]
        # aws-native suffixes a few resource names with "Resource" to avoid
        # clashes with generated types (mediaconnect:BridgeOutputResource).
        if resource.endswith("Resource") and len(resource) > len("Resource"):
            resources.append(resource[: -len("Resource")])
        candidates = [f"AWS::{s}::{r}" for s in services for r in resources]
    index = _provider_index()
    for candidate in candidates:
        hit = index.get(candidate.lower())
        if hit:
            return hit
    raise UnknownResourceTypeError(
        f"no CloudFormation schema for {type_token!r} in cfn-lint "
        f"{importlib.metadata.version('cfn-lint')} (tried {', '.join(candidates)})"
    )


def cfn_type_name(type_token: str) -> str:
    """CloudFormation type name for an aws-native token (or an AWS:: name)."""
    return _resolve_type(type_token)[0]


@functools.lru_cache(maxsize=None)
def _load_schema_file(file_id: str) -> dict:
    with (_SCHEMA_DIR / "resources" / f"{file_id}.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def load_schema(type_token: str) -> dict:
    """The raw CloudFormation schema (shared, cached object: do not mutate)."""
    return _load_schema_file(_resolve_type(type_token)[1])


# --------------------------------------------------------------------------
# Naming
# --------------------------------------------------------------------------

# Tokens: acronym plural (ARNs), acronym run (KMS in KMSKeyId), Word, word,
# digits, anything else.
_TOKEN = re.compile(
    r"[A-Z]+s(?=[A-Z]|$|\d)"
    r"|[A-Z]+(?=[A-Z][a-z]|\d|$|[^A-Za-z0-9])"
    r"|[A-Z][a-z]*|[a-z]+|\d+|[^A-Za-z0-9]+"
)


@functools.lru_cache(maxsize=4096)
def to_sdk_name(cfn_name: str) -> str:
    """CloudFormation property name -> aws-native (wire) name.

    Acronym runs are title-cased, then the first letter is lowered:
    ``KMSKeyId`` -> ``kmsKeyId``, ``NotificationARNs`` -> ``notificationArns``,
    ``CreatorMLMemberAbilities`` -> ``creatorMlMemberAbilities``.  (Checked
    against every top-level property name of pulumi-aws-native 1.84.)
    """
    if not cfn_name:
        return cfn_name
    out = []
    for tok in _TOKEN.findall(cfn_name):
        if len(tok) > 1 and (
            tok.isupper() or (len(tok) > 2 and tok.endswith("s") and tok[:-1].isupper())
        ):
            tok = tok[0] + tok[1:].lower()
        out.append(tok)
    name = "".join(out)
    return name[0].lower() + name[1:]


def _pointer_to_sdk_path(pointer: str) -> str:
    """'/properties/Members/*/AccountId' -> 'members[*].accountId'."""
    segments = pointer.split("/")[2:]  # drop '', 'properties'
    out = ""
    for i, seg in enumerate(segments):
        if seg == "*":
            out += "[*]"
            continue
        name = _TOP_LEVEL_RENAMES.get(seg) if i == 0 else None
        name = name or to_sdk_name(seg)
        out += f".{name}" if out else name
    return out


def create_only_properties(type_token: str) -> list[str]:
    """``createOnlyProperties`` as camelCase paths (changing them replaces)."""
    schema = load_schema(type_token)
    return [_pointer_to_sdk_path(p) for p in schema.get("createOnlyProperties", [])]


def read_only_properties(type_token: str) -> list[str]:
    """``readOnlyProperties`` as camelCase paths (outputs only)."""
    schema = load_schema(type_token)
    return [_pointer_to_sdk_path(p) for p in schema.get("readOnlyProperties", [])]


def required_properties(type_token: str) -> list[str]:
    """Top-level required properties as camelCase names (read-only excluded)."""
    return [
        _TOP_LEVEL_RENAMES.get(name) or to_sdk_name(name)
        for name in _validation_schema(type_token)["required"]
    ]


# --------------------------------------------------------------------------
# Schema helpers
# --------------------------------------------------------------------------


def _lookup_ref(root: dict, ref: str) -> Any:
    if not ref.startswith("#"):
        raise ValueError(f"unsupported $ref {ref!r}")
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _branches(schema: Any, root: dict, _depth: int = 0) -> list[dict]:
    """The schema and every subschema that applies to the same instance
    ($ref, allOf, anyOf, oneOf, then/else), resolved."""
    if not isinstance(schema, dict) or _depth > 20:
        return []
    out = [schema]
    if "$ref" in schema:
        out += _branches(_lookup_ref(root, schema["$ref"]), root, _depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []) or []:
            out += _branches(sub, root, _depth + 1)
    for key in ("then", "else"):
        out += _branches(schema.get(key), root, _depth + 1)
    return out


def _fix_refs(node: Any) -> Any:
    """Rewrite 'resource-schema.json#/...' (a self reference used by a few
    schemas) to '#/...', and drop $schema/$id so nothing is fetched."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("$schema", "$id") and isinstance(v, str):
                continue
            if k == "$ref" and isinstance(v, str) and not v.startswith("#") and "#" in v:
                v = "#" + v.split("#", 1)[1]
            out[k] = _fix_refs(v)
        return out
    if isinstance(node, list):
        return [_fix_refs(v) for v in node]
    return node


def _subschemas_at(root: dict, segments: list[str]) -> list[dict]:
    """Schemas of the property at /properties/<segments...> ('*' = items)."""
    current = [root]
    for seg in segments:
        nxt: list[dict] = []
        for schema in current:
            for branch in _branches(schema, root):
                if seg == "*":
                    items = branch.get("items")
                    if isinstance(items, dict):
                        nxt.append(items)
                elif isinstance(branch.get("properties"), dict) and seg in branch["properties"]:
                    nxt.append(branch["properties"][seg])
        current = nxt
    return current


@functools.lru_cache(maxsize=None)
def _validation_schema(type_token: str) -> dict:
    """Deep copy of the schema with read-only properties removed."""
    raw = load_schema(type_token)
    schema = _fix_refs(copy.deepcopy(raw))
    read_only_top: set[str] = set()
    for pointer in raw.get("readOnlyProperties", []):
        segments = pointer.split("/")[2:]
        if not segments:
            continue
        if len(segments) == 1:
            read_only_top.add(segments[0])
            schema.get("properties", {}).pop(segments[0], None)
        # A read-only property is never an input: it can't be required.
        for parent in _subschemas_at(schema, segments[:-1]):
            for branch in _branches(parent, schema):
                if segments[-1] in branch.get("required", []):
                    branch["required"] = [r for r in branch["required"] if r != segments[-1]]
    schema["required"] = [r for r in schema.get("required", []) if r not in read_only_top]
    schema["x-readOnlyTop"] = sorted(read_only_top)
    return schema


# --------------------------------------------------------------------------
# Converting Pulumi inputs to CloudFormation properties
# --------------------------------------------------------------------------


def _is_unknown(value: Any) -> bool:
    if value is None or value == _UNKNOWN_SENTINEL:
        return True
    cls = type(value)
    # pulumi.output.Unknown, delivered by mocks in preview mode.
    return cls.__name__ == "Unknown" and cls.__module__.startswith("pulumi")


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG:
        value = value.get("value")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class _Ctx:
    root: dict
    # CloudFormation path -> input path, for error reporting.
    paths: dict[tuple, tuple] = field(default_factory=dict)
    # CloudFormation paths of values that were unknown and skipped.
    unknown: set[tuple] = field(default_factory=set)


@dataclass
class _ObjectShape:
    properties: dict[str, list[dict]] = field(default_factory=dict)
    additional: list[dict] = field(default_factory=list)
    patterns: list[tuple[str, dict]] = field(default_factory=list)


def _object_shape(schemas: Iterable[dict], root: dict) -> _ObjectShape:
    shape = _ObjectShape()
    for schema in schemas:
        for branch in _branches(schema, root):
            props = branch.get("properties")
            if isinstance(props, dict):
                for name, sub in props.items():
                    shape.properties.setdefault(name, []).append(sub)
            ap = branch.get("additionalProperties")
            if isinstance(ap, dict):
                shape.additional.append(ap)
            pp = branch.get("patternProperties")
            if isinstance(pp, dict):
                shape.patterns.extend(pp.items())
    return shape


def _match_property(key: str, names: Iterable[str], top_level: bool) -> str | None:
    names = list(names)
    if key in names:
        return key
    if key[:1].upper() + key[1:] in names:
        return key[:1].upper() + key[1:]
    folded = [n for n in names if n.lower() == key.lower()]
    if len(folded) > 1:  # ambiguous: prefer the one Pulumi would name `key`
        folded = [n for n in folded if to_sdk_name(n) == key]
    if len(folded) == 1:
        return folded[0]
    if top_level:
        for cfn, sdk in _TOP_LEVEL_RENAMES.items():
            if key == sdk and cfn in names:
                return cfn
    return None


def _search(pattern: str, text: str) -> bool:
    return bool(_compile(pattern).search(text))


@functools.lru_cache(maxsize=None)
def _compile(pattern: str):
    # A pattern neither engine compiles is an error, not a pass: a check that
    # skips what it cannot read would accept anything.
    try:
        return re.compile(pattern)
    except re.error:
        return _regex.compile(pattern)


def _convert(value: Any, schemas: list[dict], cfn_path: tuple, in_path: tuple, ctx: _Ctx) -> Any:
    ctx.paths[cfn_path] = in_path
    value = _unwrap(value)
    if isinstance(value, dict):
        shape = _object_shape(schemas, ctx.root)
        out: dict[str, Any] = {}
        for key, sub_value in value.items():
            if shape.properties:
                name = _match_property(key, shape.properties, top_level=not cfn_path)
            else:
                name = None
            if name is not None:
                sub_schemas = shape.properties[name]
            else:
                # Free-form map key (or an unknown property): keep verbatim.
                name = key
                sub_schemas = [s for p, s in shape.patterns if _search(p, key)]
                if not sub_schemas:
                    sub_schemas = list(shape.additional)
            if _is_unknown(_unwrap(sub_value)):
                ctx.unknown.add(cfn_path + (name,))
                ctx.paths[cfn_path + (name,)] = in_path + (key,)
                continue
            out[name] = _convert(sub_value, sub_schemas, cfn_path + (name,), in_path + (key,), ctx)
        return out
    if isinstance(value, (list, tuple)):
        item_schemas = []
        for schema in schemas:
            for branch in _branches(schema, ctx.root):
                items = branch.get("items")
                if isinstance(items, dict):
                    item_schemas.append(items)
        out_list = []
        for index, item in enumerate(value):
            if _is_unknown(_unwrap(item)):
                ctx.unknown.add(cfn_path + (len(out_list),))
                continue
            out_list.append(
                _convert(item, item_schemas, cfn_path + (len(out_list),), in_path + (index,), ctx)
            )
        return out_list
    return value


def _to_cfn(type_token: str, inputs: dict) -> tuple[dict, _Ctx]:
    schema = _validation_schema(type_token)
    ctx = _Ctx(root=schema)
    # Read-only properties were removed from the validation schema; match
    # against the full property list so they are recognised (and reported).
    names = dict(load_schema(type_token).get("properties", {}))
    top_shape = {n: [schema["properties"].get(n, {})] for n in names}
    props: dict[str, Any] = {}
    ctx.paths[()] = ()
    for key, value in (inputs or {}).items():
        name = _match_property(key, top_shape, top_level=True) or key
        if _is_unknown(_unwrap(value)):
            ctx.unknown.add((name,))
            ctx.paths[(name,)] = (key,)
            continue
        props[name] = _convert(value, top_shape.get(name, []), (name,), (key,), ctx)
    return props, ctx


def to_cfn_properties(type_token: str, inputs: dict) -> dict:
    """The inputs with CloudFormation property names (unknowns dropped)."""
    return _to_cfn(type_token, inputs)[0]


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{_short(instance)} does not match {pattern!r}")


def _pattern_properties(validator, pattern_properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict, schema: dict) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in properties and not any(_search(p, key) for p in patterns)
    ]


def _additional_properties(validator, additional, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(e) for e in sorted(extras, key=str))
        yield ValidationError(f"unknown propert{'y' if len(extras) == 1 else 'ies'} {listed} "
                              "(additionalProperties is false)")


# Draft 7 semantics; regex keywords go through _search (re, then `regex`).
_Validator = extend(
    jsonschema.Draft7Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)


@functools.lru_cache(maxsize=None)
def _validator(type_token: str):
    return _Validator(_validation_schema(type_token))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _format_path(path: Iterable) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


def _cfn_path_text(path: Iterable) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _input_path(cfn_path: tuple, ctx: _Ctx) -> tuple:
    if cfn_path in ctx.paths:
        return ctx.paths[cfn_path]
    for cut in range(len(cfn_path) - 1, -1, -1):  # deepest known prefix
        if cfn_path[:cut] in ctx.paths:
            # The rest was not in the inputs (e.g. a missing required
            # property): show it with the name Pulumi would use.
            rest = tuple(
                part if isinstance(part, int)
                else (_TOP_LEVEL_RENAMES.get(part) if cut == i == 0 else None) or to_sdk_name(part)
                for i, part in enumerate(cfn_path[cut:], start=cut)
            )
            return ctx.paths[cfn_path[:cut]] + rest
    return cfn_path


def _location(cfn_path: tuple, ctx: _Ctx) -> str:
    text = _format_path(_input_path(cfn_path, ctx))
    if cfn_path:
        text += f" (CloudFormation: {_cfn_path_text(cfn_path)})"
    return text


def _has_unknown_under(cfn_path: tuple, ctx: _Ctx) -> bool:
    n = len(cfn_path)
    return any(u[:n] == cfn_path for u in ctx.unknown)


def _describe(error: ValidationError, ctx: _Ctx) -> list[str]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "required":
        missing = [r for r in error.validator_value
                   if isinstance(error.instance, dict) and r not in error.instance]
        out = []
        for name in missing:
            if f"{name!r} is a required property" != error.message:
                continue
            if path + (name,) in ctx.unknown:
                continue  # unknown in this preview, may well be set
            out.append(f"{_location(path + (name,), ctx)}: required property is missing")
        return out
    if kind in ("minItems", "minProperties", "oneOf", "anyOf", "dependencies") and \
            _has_unknown_under(path, ctx):
        return []  # can't decide while part of the value is unknown
    if kind in ("oneOf", "anyOf") and error.context:
        # Report the alternative that matched best: the one whose errors are
        # deepest (its top level fits), then the one with fewest errors.
        by_branch: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            by_branch.setdefault(sub.schema_path[0], []).append(sub)
        def score(errors):
            return (min(len(e.relative_path) for e in errors), -len(errors))
        best = max(by_branch.values(), key=score)
        out = []
        for sub in best:
            for line in _describe(sub, ctx):
                out.append(f"{line} (no {kind} alternative matched; closest shown)")
        return out or [f"{_location(path, ctx)}: value does not match any {kind} alternative"]
    message = error.message
    if len(message) > 2 * _MAX_REPR:
        message = message[: 2 * _MAX_REPR - 3] + "..."
    return [f"{_location(path, ctx)}: {message}"]


def validate_native(type_token: str, inputs: dict) -> list[str]:
    """Validate aws-native resource inputs against the CloudFormation schema.

    ``inputs`` are camelCase wire inputs (``MockResourceArgs.inputs``).
    Returns a sorted list of human-readable errors; empty means valid.
    Raises UnknownResourceTypeError if the type has no schema.
    """
    schema = _validation_schema(type_token)
    props, ctx = _to_cfn(type_token, inputs)
    errors: list[str] = []
    for name in schema["x-readOnlyTop"]:
        if name in props:
            errors.append(f"{_location((name,), ctx)}: read-only property, cannot be set")
            props.pop(name)
    for error in _validator(type_token).iter_errors(props):
        errors.extend(_describe(error, ctx))
    return sorted(set(errors))
