#!/usr/bin/env python3
"""A Hetzner Cloud API fake for pantheros' provisioning tests.

It serves the stored OpenAPI schema (shared/hetzner/cloud-openapi.json, the
one the `hcloud` crate was generated from) on 127.0.0.1: every request is
validated against the schema before it is handled, and every response after
it is built (a response that does not validate is a bug in the fake and is
reported as such). It keeps state per API token (a token is a project):
SSH keys, servers, actions that progress over time. Test hooks live under
/__fake/: request log, schema violations, error injection, and what a
server's reset does to the test world (on-reset: an argv it runs).

Tokens: "valid-…" work; "readonly-…" can only read; anything else is 401.

    python3 fake_hcloud.py --spec cloud-openapi.json   # prints "LISTENING <port>"
"""
import argparse
import base64
import copy
import datetime
import hashlib
import itertools
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

HOST = "https://api.hetzner.cloud"
NOW = "2026-11-22T00:00:00Z"


def nullable_all_of(spec):
    """OpenAPI 3.0 ignores `nullable` on a schema that has `allOf` but no
    `type`, and validators apply the referenced schema to null as well;
    Hetzner's spec uses exactly that form for fields the API sends as null
    (and the hcloud crate models as Option). Such a schema `{allOf: [$ref X],
    nullable: true}` is replaced by a copy of X with `nullable: true` (and
    null added to an enum), which is what the spec means. Nothing else in
    the spec is changed."""
    schemas = spec["components"]["schemas"]

    def fix(node):
        if isinstance(node, dict):
            all_of = node.get("allOf")
            if node.get("nullable") and all_of and len(all_of) == 1 and "$ref" in all_of[0] and "type" not in node:
                target = copy.deepcopy(schemas[all_of[0]["$ref"].split("/")[-1]])
                target["nullable"] = True
                if "enum" in target and None not in target["enum"]:
                    target["enum"] = target["enum"] + [None]
                for k in ("description", "deprecated"):
                    if k in node:
                        target[k] = node[k]
                node.clear()
                node.update(target)
            for v in list(node.values()):
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(spec)
    return spec


# --- instances built from the schema's own examples -----------------------

class Synth:
    def __init__(self, spec):
        self.schemas = spec["components"]["schemas"]

    def resolve(self, s):
        while "$ref" in s:
            s = self.schemas[s["$ref"].split("/")[-1]]
        return s

    def make(self, s, depth=0):
        s = self.resolve(s)
        if "allOf" in s:
            out = {}
            for part in s["allOf"]:
                v = self.make(part, depth)
                if isinstance(v, dict):
                    out.update(v)
                else:
                    return v
            return out
        if "example" in s and s.get("type") != "object":
            return copy.deepcopy(s["example"])
        t = s.get("type")
        if t == "object" or "properties" in s:
            out = {}
            for name, prop in s.get("properties", {}).items():
                out[name] = self.make(prop, depth + 1)
            return out
        if t == "array":
            return []
        if "enum" in s:
            return s["enum"][0]
        return {"string": "x", "integer": 1, "number": 1, "boolean": False}.get(t)

    def of(self, name):
        return self.make({"$ref": "#/components/schemas/" + name})


# --- the fake ---------------------------------------------------------------

class Project:
    def __init__(self):
        self.ssh_keys = {}
        self.servers = {}
        self.actions = {}


class Fake:
    def __init__(self, spec_path):
        self.raw = json.load(open(spec_path))
        self.api = OpenAPI.from_dict(nullable_all_of(copy.deepcopy(self.raw)))
        self.synth = Synth(self.raw)
        self.lock = threading.Lock()
        self.projects = {}
        self.ids = itertools.count(1000)
        self.requests = []
        self.violations = []
        self.injections = []
        self.action_polls = 2
        self.seed()

    def seed(self):
        s = self.synth
        self.locations = []
        for i, (name, zone, country) in enumerate([
            ("fsn1", "eu-central", "DE"), ("nbg1", "eu-central", "DE"), ("hel1", "eu-central", "FI"),
            ("ash", "us-east", "US"), ("hil", "us-west", "US"), ("sin", "ap-southeast", "SG"),
        ]):
            loc = s.of("location")
            loc.update({"id": i + 1, "name": name, "network_zone": zone, "country": country,
                        "description": name, "city": name})
            self.locations.append(loc)
        eu = ["fsn1", "nbg1", "hel1"]
        types = [
            ("cx23", "x86", eu, None),
            ("cpx22", "x86", eu + ["ash", "hil", "sin"], None),
            ("cax11", "arm", eu, None),
            ("cx22", "x86", eu, {"announced": "2025-10-16T00:00:00Z", "unavailable_after": "2026-01-01T00:00:00Z"}),
            ("cx43", "x86", eu, None),
        ]
        self.server_types = []
        for i, (name, arch, locs, dep) in enumerate(types):
            st = s.of("server_type")
            cores, memory = {"cx43": (8, 16.0)}.get(name, (2, 4.0))
            st.update({"id": i + 1, "name": name, "description": name.upper(), "architecture": arch,
                       "cores": cores, "memory": memory,
                       "deprecated": dep is not None, "deprecation": dep})
            st["locations"] = [{"id": self.loc(l)["id"], "name": l, "deprecation": dep} for l in locs]
            self.server_types.append(st)
        self.images = []
        for i, (name, arch) in enumerate([("ubuntu-24.04", "x86"), ("ubuntu-24.04", "arm"),
                                          ("debian-12", "x86"), ("debian-12", "arm")]):
            im = s.of("image")
            im.update({"id": 100 + i, "name": name, "architecture": arch, "type": "system",
                       "status": "available", "deprecated": None, "deleted": None, "bound_to": None,
                       "created_from": None, "description": name, "os_flavor": name.split("-")[0],
                       "os_version": name.split("-")[1], "rapid_deploy": True, "labels": {}})
            self.images.append(im)
        self.isos = []
        for i, (name, arch) in enumerate([("nixos-minimal-25.05-x86_64", "x86"), ("nixos-minimal-25.05-aarch64", "arm")]):
            iso = s.of("iso")
            iso.update({"id": 200 + i, "name": name, "description": name, "type": "public",
                        "architecture": arch, "deprecation": None})
            self.isos.append(iso)

    def loc(self, name):
        return next(l for l in self.locations if l["name"] == name)

    # --- helpers
    def action(self, p, command, resource_id, polls=None):
        a = self.synth.of("action")
        a.update({"id": next(self.ids), "command": command, "status": "running", "progress": 0,
                  "started": NOW, "finished": None, "error": None,
                  "resources": [{"id": resource_id, "type": "server"}]})
        p.actions[a["id"]] = {"a": a, "polls": self.action_polls if polls is None else polls}
        return a

    def action_view(self, p, aid):
        rec = p.actions[aid]
        if rec["polls"] <= 0 and rec["a"]["status"] == "running":
            rec["a"].update({"status": "success", "progress": 100, "finished": NOW})
        return rec["a"]

    def server_view(self, p, srv):
        done = all(self.action_view(p, aid)["status"] != "running" for aid in srv["_actions"])
        out = {k: v for k, v in srv.items() if not k.startswith("_")}
        if srv["_deleting"]:
            out["status"] = "deleting"
        elif done and out["status"] == "initializing":
            srv["status"] = out["status"] = "running"
        return out

    def err(self, status, code, message, details=None):
        return status, {"error": {"code": code, "message": message, "details": details}}

    def page(self, key, items):
        return {key: items, "meta": {"pagination": {"page": 1, "per_page": 25, "previous_page": None,
                                                    "next_page": None, "last_page": 1,
                                                    "total_entries": len(items)}}}

    # --- dispatch
    def handle(self, method, path, query, headers, body):
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = auth.removeprefix("Bearer ").strip()
        if not (token.startswith("valid-") or token.startswith("readonly-")):
            return self.err(401, "unauthorized", "unable to authenticate")
        if token.startswith("readonly-") and method != "GET":
            return self.err(401, "token_readonly", "the token is read-only")
        p = self.projects.setdefault(token, Project())
        q = {k: v[-1] for k, v in query.items()}
        m = re.fullmatch(r"/v1/(.*)", path)
        route = m.group(1) if m else ""

        if method == "GET" and route == "locations":
            return 200, self.page("locations", [l for l in self.locations if "name" not in q or l["name"] == q["name"]])
        if method == "GET" and route == "server_types":
            return 200, self.page("server_types", [t for t in self.server_types if "name" not in q or t["name"] == q["name"]])
        if method == "GET" and route == "images":
            items = [i for i in self.images if ("name" not in q or i["name"] == q["name"])
                     and ("architecture" not in q or i["architecture"] == q["architecture"])]
            return 200, self.page("images", items)
        if method == "GET" and route == "isos":
            return 200, self.page("isos", [i for i in self.isos if "name" not in q or i["name"] == q["name"]])
        if method == "GET" and route == "ssh_keys":
            items = [k for k in p.ssh_keys.values() if ("name" not in q or k["name"] == q["name"])
                     and ("fingerprint" not in q or k["fingerprint"] == q["fingerprint"])]
            return 200, self.page("ssh_keys", items)
        if method == "POST" and route == "ssh_keys":
            try:
                blob = base64.b64decode(body["public_key"].split()[1])
            except Exception:
                return self.err(422, "invalid_input", "invalid input in field 'public_key'",
                                {"fields": [{"name": "public_key", "messages": ["invalid"]}]})
            fp = ":".join("%02x" % b for b in hashlib.md5(blob).digest())
            if any(k["fingerprint"] == fp for k in p.ssh_keys.values()):
                return self.err(409, "uniqueness_error", "SSH key with the same fingerprint already exists",
                                {"fields": [{"name": "public_key"}]})
            if any(k["name"] == body["name"] for k in p.ssh_keys.values()):
                return self.err(409, "uniqueness_error", "name is already used", {"fields": [{"name": "name"}]})
            k = {"id": next(self.ids), "name": body["name"], "fingerprint": fp, "public_key": body["public_key"],
                 "labels": body.get("labels") or {}, "created": NOW}
            p.ssh_keys[k["id"]] = k
            return 201, {"ssh_key": k}
        if method == "GET" and route == "servers":
            items = [self.server_view(p, s) for s in p.servers.values()
                     if ("name" not in q or s["name"] == q["name"]) and self.labels_match(s, q.get("label_selector"))]
            return 200, self.page("servers", items)
        if method == "POST" and route == "servers":
            return self.create_server(p, body)
        m = re.fullmatch(r"servers/(\d+)", route)
        if m:
            sid = int(m.group(1))
            if sid not in p.servers:
                return self.err(404, "not_found", "server with ID '%d' not found" % sid)
            srv = p.servers[sid]
            if method == "GET":
                # Time passes for a server that is looked at: its actions progress.
                for aid in srv["_actions"]:
                    p.actions[aid]["polls"] -= 1
                return 200, {"server": self.server_view(p, srv)}
            if method == "DELETE":
                a = self.action(p, "delete_server", sid, polls=0)
                del p.servers[sid]
                return 200, {"action": self.action_view(p, a["id"])}
        m = re.fullmatch(r"servers/(\d+)/actions/(\w+)", route)
        if m and method == "POST":
            sid, what = int(m.group(1)), m.group(2)
            if sid not in p.servers:
                return self.err(404, "not_found", "server with ID '%d' not found" % sid)
            srv = p.servers[sid]
            a = self.action(p, what, sid)
            # A power cycle: the test world's machine behind this name, if
            # the test told us how to reach it (on-reset).
            if what == "reset" and srv["name"] in getattr(self, "on_reset", {}):
                subprocess.Popen(self.on_reset[srv["name"]], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if what == "enable_rescue":
                srv["rescue_enabled"] = True
                return 201, {"action": a, "root_password": "rescue-password-%d" % sid}
            if what == "disable_rescue":
                srv["rescue_enabled"] = False
            if what == "attach_iso":
                iso = next((i for i in self.isos if i["name"] == body.get("iso") or str(i["id"]) == str(body.get("iso"))), None)
                if iso is None:
                    return self.err(404, "not_found", "iso not found")
                srv["iso"] = iso
            if what == "detach_iso":
                srv["iso"] = None
            return 201, {"action": a}
        m = re.fullmatch(r"actions/(\d+)", route)
        if m and method == "GET":
            aid = int(m.group(1))
            if aid not in p.actions:
                return self.err(404, "not_found", "action not found")
            p.actions[aid]["polls"] -= 1
            return 200, {"action": self.action_view(p, aid)}
        return self.err(404, "not_found", "the fake does not implement %s %s" % (method, path))

    def labels_match(self, srv, selector):
        if not selector:
            return True
        for part in selector.split(","):
            k, _, v = part.partition("==")
            if srv["labels"].get(k.strip()) != v.strip():
                return False
        return True

    def create_server(self, p, body):
        st = next((t for t in self.server_types if t["name"] == body["server_type"]), None)
        if st is None:
            return self.err(422, "invalid_input", "server type %s not found" % body["server_type"],
                            {"fields": [{"name": "server_type", "messages": ["not found"]}]})
        loc_name = body.get("location") or "fsn1"
        offered = next((l for l in st["locations"] if l["name"] == loc_name), None)
        if offered is None:
            return self.err(422, "invalid_input", "unsupported location for server type",
                            {"fields": [{"name": "location", "messages": ["unsupported location for server type"]}]})
        if st["deprecation"]:
            return self.err(412, "resource_unavailable", "server type %s is no longer available" % st["name"])
        image = next((i for i in self.images if i["name"] == body["image"] and i["architecture"] == st["architecture"]), None)
        if image is None:
            return self.err(422, "invalid_input", "image %s not found" % body["image"],
                            {"fields": [{"name": "image", "messages": ["not found"]}]})
        if any(s["name"] == body["name"] for s in p.servers.values()):
            return self.err(409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})
        for ref in body.get("ssh_keys") or []:
            if not any(str(k["id"]) == str(ref) or k["name"] == ref for k in p.ssh_keys.values()):
                return self.err(422, "invalid_input", "ssh key %s not found" % ref)
        sid = next(self.ids)
        srv = self.synth.of("server")
        n = sid % 250
        srv.update({
            "id": sid, "name": body["name"], "status": "initializing", "created": NOW,
            "server_type": st, "image": image, "iso": None, "rescue_enabled": False, "locked": False,
            "labels": body.get("labels") or {}, "location": self.loc(loc_name), "private_net": [],
            "backup_window": None, "placement_group": None, "load_balancers": [], "volumes": [],
            "primary_disk_size": 40,
        })
        pn = srv["public_net"]
        # An address the test planned for this name (set-ip before creation).
        ip = getattr(self, "planned_ips", {}).get(body["name"], "203.0.113.%d" % n)
        pn["ipv4"] = dict(pn.get("ipv4") or {}, ip=ip, blocked=False, dns_ptr="static.%d.example" % n, id=sid)
        net = getattr(self, "planned_ipv6", {}).get(body["name"], "2001:db8:%x::/64" % n)
        pn["ipv6"] = dict(pn.get("ipv6") or {}, ip=net, blocked=False, dns_ptr=[], id=sid)
        # public_net.enable_ipv4 = false: no IPv4 address at all (Hetzner's IPv6-only servers).
        if (body.get("public_net") or {}).get("enable_ipv4") is False:
            pn["ipv4"] = None
        pn["floating_ips"] = []
        pn["firewalls"] = []
        create = self.action(p, "create_server", sid)
        start = self.action(p, "start_server", sid)
        srv["_actions"] = [create["id"], start["id"]]
        srv["_deleting"] = False
        p.servers[sid] = srv
        return 201, {"server": self.server_view(p, srv), "action": create, "next_actions": [start], "root_password": None}


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do(self, method):
            u = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if u.path.startswith("/__fake/"):
                return self.control(method, u.path, raw)
            query = parse_qs(u.query)
            # Canonical names: the schema's security check looks up "Authorization".
            headers = {"-".join(w.capitalize() for w in k.split("-")): v for k, v in self.headers.items()}
            with fake.lock:
                entry = {"method": method, "path": u.path, "query": {k: v for k, v in query.items()},
                         "body": json.loads(raw) if raw else None}
                fake.requests.append(entry)
                req = MockRequest(HOST, method.lower(), u.path, args={k: v[-1] for k, v in query.items()},
                                  headers=headers, data=raw or None,
                                  content_type=self.headers.get("Content-Type") or "application/json")
                try:
                    fake.api.validate_request(req)
                except Exception as e:
                    fake.violations.append({"kind": "request", "method": method, "path": u.path, "error": repr(e)[:2000]})
                    return self.reply(400, {"error": {"code": "json_error" if raw else "invalid_input",
                                                      "message": "request does not match the API schema: %s" % str(e)[:500],
                                                      "details": None}})
                inj = next((i for i in fake.injections if i["method"] == method and re.fullmatch(i["path"], u.path) and i["times"] > 0), None)
                if inj is not None:
                    inj["times"] -= 1
                    if inj.get("after"):
                        fake.handle(method, u.path, query, headers, json.loads(raw) if raw else {})
                    status, obj = inj["status"], {"error": {"code": inj["code"], "message": inj.get("message", inj["code"]),
                                                            "details": inj.get("details")}}
                else:
                    status, obj = fake.handle(method, u.path, query, headers, json.loads(raw) if raw else {})
                resp = MockResponse(json.dumps(obj).encode(), status_code=status, headers={"Content-Type": "application/json"})
                try:
                    fake.api.validate_response(req, resp)
                except Exception as e:
                    fake.violations.append({"kind": "response", "method": method, "path": u.path, "status": status,
                                            "error": repr(e)[:2000]})
                    return self.reply(500, {"error": {"code": "server_error", "message": "fake bug: response does not match the schema", "details": None}})
                self.reply(status, obj)

        def control(self, method, path, raw):
            with fake.lock:
                if path == "/__fake/requests":
                    return self.reply(200, fake.requests)
                if path == "/__fake/violations":
                    return self.reply(200, fake.violations)
                if path == "/__fake/inject" and method == "POST":
                    fake.injections.append(json.loads(raw))
                    return self.reply(200, {"ok": True})
                if path == "/__fake/state":
                    return self.reply(200, {t: {"ssh_keys": list(p.ssh_keys.values()),
                                                "servers": [{k: v for k, v in s.items() if not k.startswith("_")} for s in p.servers.values()]}
                                            for t, p in fake.projects.items()})
                if path == "/__fake/set-ip" and method == "POST":
                    req = json.loads(raw)
                    # Also for a server created later under that name.
                    if not hasattr(fake, "planned_ips"):
                        fake.planned_ips = {}
                    fake.planned_ips[req["name"]] = req["ip"]
                    for p in fake.projects.values():
                        for srv in p.servers.values():
                            if srv["name"] == req["name"]:
                                srv["public_net"]["ipv4"]["ip"] = req["ip"]
                    return self.reply(200, {"ok": True})
                if path == "/__fake/set-ipv6" and method == "POST":
                    # The /64 a server created later under that name gets
                    # (a network of the test world, so it can be reached).
                    req = json.loads(raw)
                    if not hasattr(fake, "planned_ipv6"):
                        fake.planned_ipv6 = {}
                    fake.planned_ipv6[req["name"]] = req["net"]
                    return self.reply(200, {"ok": True})
                if path == "/__fake/deprecate" and method == "POST":
                    # Deprecate a server type everywhere, as Hetzner does:
                    # the type's object and each location's.
                    req = json.loads(raw)
                    dep = {"announced": req["announced"], "unavailable_after": req["unavailable_after"]}
                    for st in fake.server_types:
                        if st["name"] == req["server_type"]:
                            st["deprecated"] = True
                            st["deprecation"] = dep
                            for loc in st["locations"]:
                                loc["deprecation"] = dep
                    return self.reply(200, {"ok": True})
                if path == "/__fake/on-reset" and method == "POST":
                    # What a reset of the server with this name does to the
                    # test world (an argv run as the fake's user).
                    req = json.loads(raw)
                    if not hasattr(fake, "on_reset"):
                        fake.on_reset = {}
                    fake.on_reset[req["name"]] = req["argv"]
                    return self.reply(200, {"ok": True})
                if path == "/__fake/action-polls" and method == "POST":
                    fake.action_polls = json.loads(raw)["polls"]
                    return self.reply(200, {"ok": True})
            self.reply(404, {"error": "no such control endpoint"})

        def do_GET(self):
            self.do("GET")

        def do_POST(self):
            self.do("POST")

        def do_DELETE(self):
            self.do("DELETE")

        def do_PUT(self):
            self.do("PUT")

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    fake = Fake(args.spec)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(fake))
    print("LISTENING %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
