# The facts pantheros recorded for a host (hosts/<host>/facts.json): what
# the machines decided, such as the server's addresses, its SSH host key or
# its WireGuard public key. `path` need not exist (a host before its first
# `pantheros up`): then there are none. Builtins only.
#
# The file, written by pantheros only:
#   { "version": 1,
#     "facts": { "<name>": { "value": …, "source": "…", "recorded": "…" } } }
# The result maps each name to its value.
path:
if builtins.pathExists path then
  builtins.mapAttrs (_: fact: fact.value) ((builtins.fromJSON (builtins.readFile path)).facts or { })
else
  { }
