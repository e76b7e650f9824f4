# A small HCL renderer for SPIRE's configuration: attributes as
# `key = value`, attribute sets as blocks, and the plugin sections as
# `Type "name" { plugin_data { … } }`.
let
  indent = n: builtins.concatStringsSep "" (builtins.genList (_: "  ") n);
  escape = s: builtins.replaceStrings [ "\\" "\"" ] [ "\\\\" "\\\"" ] s;
  scalar =
    v:
    if builtins.isBool v then
      (if v then "true" else "false")
    else if builtins.isInt v || builtins.isFloat v then
      toString v
    else if builtins.isList v then
      "[${builtins.concatStringsSep ", " (map scalar v)}]"
    else
      "\"${escape v}\"";
  body =
    depth: attrs:
    builtins.concatStringsSep "" (
      map (
        k:
        let
          v = attrs.${k};
        in
        if v == null then
          ""
        else if builtins.isAttrs v then
          "${indent depth}${k} {\n${body (depth + 1) v}${indent depth}}\n"
        else
          "${indent depth}${k} = ${scalar v}\n"
      ) (builtins.attrNames attrs)
    );
  plugins =
    attrs:
    builtins.concatStringsSep "" (
      map (
        type:
        builtins.concatStringsSep "" (
          map (name: "  ${type} \"${name}\" {\n${body 2 attrs.${type}.${name}}  }\n") (
            builtins.attrNames attrs.${type}
          )
        )
      ) (builtins.attrNames attrs)
    );
in
settings:
builtins.concatStringsSep "" (
  map (
    k:
    if k == "plugins" then
      "plugins {\n${plugins settings.plugins}}\n"
    else if builtins.isAttrs settings.${k} then
      "${k} {\n${body 1 settings.${k}}}\n"
    else
      "${k} = ${scalar settings.${k}}\n"
  ) (builtins.attrNames settings)
)
