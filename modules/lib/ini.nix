# INI with a global section, rendered the way nixpkgs'
# formats.iniWithGlobalSection does for scalar values: `key = value`,
# booleans as true/false, sections as `[name]`.
let
  value =
    v:
    if builtins.isBool v then
      (if v then "true" else "false")
    else if builtins.isList v then
      throw "ini: lists are not allowed (write \"a, b\")"
    else
      toString v;
  lines =
    attrs:
    builtins.concatStringsSep "" (
      map (k: "${k} = ${value attrs.${k}}\n") (
        builtins.filter (k: attrs.${k} != null) (builtins.attrNames attrs)
      )
    );
in
{
  globalSection ? { },
  sections ? { },
}:
lines globalSection
+ builtins.concatStringsSep "" (map (s: "\n[${s}]\n" + lines sections.${s}) (builtins.attrNames sections))
