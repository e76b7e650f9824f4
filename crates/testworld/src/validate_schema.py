"""Validate a JSON document (stdin) against docs/json/NAME.schema.json.

    python3 validate_schema.py SCHEMA_DIR NAME < doc.json

Every schema in SCHEMA_DIR is registered by its $id, so schemas may refer
to each other. Prints one line per violation; exit 1 when there is any.
"""
import glob
import json
import os
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

schema_dir, name = sys.argv[1], sys.argv[2]
schemas = {}
for path in glob.glob(os.path.join(schema_dir, "*.schema.json")):
    with open(path, encoding="utf-8") as f:
        schemas[os.path.basename(path)] = json.load(f)
registry = Registry().with_resources(
    [(s["$id"], Resource.from_contents(s)) for s in schemas.values()]
)
schema = schemas[name + ".schema.json"]
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, registry=registry)
doc = json.load(sys.stdin)
errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
for e in errors:
    print("/".join(str(p) for p in e.absolute_path) or "(root)", ":", e.message)
sys.exit(1 if errors else 0)
