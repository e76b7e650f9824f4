# How pantheros reads a flake's hosts: applied to `nixosConfigurations`
# (`nix eval --apply`) in one evaluation for the whole fleet.
#
# `args` comes from pantheros as JSON:
#   one         null, or the one host to evaluate without tryEval (so Nix
#               prints its real error)
#   drvFor      null, or the selectors of the hosts whose toplevel
#               derivation (and output path) is wanted
#   disko       with drvFor: also disko's script derivation
#   platformFor null, or the selectors of the hosts whose platform is
#               wanted without evaluating their systems
#   extras      name -> selectors of the hosts each extra is wanted for
#   only        null, or the names of the hosts to read at all (an
#               evaluation worker's share: the other hosts are not touched)
# A selector is { name = "..."; }, { regex = "..."; } (a glob, already a
# POSIX ERE) or { tag = "..."; }; an empty list picks every host.
#
# `extras` are named functions of a host's `config` that a command
# registers (validate's Flashpods summary); their values land in the
# host's `extras`.
{ args, extras }:
cfgs:
let
  picks =
    selectors: name: d:
    selectors == [ ]
    || builtins.any (
      s:
      if s ? name then
        s.name == name
      else if s ? regex then
        builtins.match s.regex name != null
      else
        builtins.elem s.tag (d.tags or [ ])
    ) selectors;

  wanted =
    selectors: name: d:
    selectors != null && picks selectors name d;

  inspect =
    name: cfg:
    let
      c = cfg.config;
      raw = c.pantheros.deployment or null;
      # The facts file as a string: JSON of a path would copy it to the store.
      d =
        if raw == null then
          null
        else
          raw
          // {
            factsFile = if (raw.factsFile or null) == null then null else toString raw.factsFile;
          };
      dd = if d == null then { } else d;
      top = c.system.build.toplevel;
      extraValues = builtins.listToAttrs (
        map (extra: {
          name = extra;
          value = extras.${extra} c;
        }) (builtins.filter (extra: wanted args.extras.${extra} name dd) (builtins.attrNames args.extras))
      );
    in
    {
      deployment = d;
    }
    // (
      # A host's warnings come from its modules' settings: reading them
      # costs about what its system does, so only with its system.
      if wanted args.drvFor name dd then
        {
          warnings = c.warnings or [ ];
          drvPath = top.drvPath;
          system = top.system or null;
          toplevel = top.outPath or null;
        }
        // (
          if args.disko then
            { diskoDrvPath = (c.system.build.diskoScript or { drvPath = null; }).drvPath; }
          else
            { }
        )
      else
        { }
    )
    // (
      if wanted args.platformFor name dd then
        { system = c.nixpkgs.hostPlatform.system or null; }
      else
        { }
    )
    // (if extraValues == { } then { } else { extras = extraValues; });

  # { name = null; ... } for a list of names (the keys intersectAttrs reads).
  names =
    list:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = null;
      }) list
    );

  # A host that throws does not hide the others.
  guarded =
    name: cfg:
    let
      v = inspect name cfg;
      r = builtins.tryEval (builtins.deepSeq v v);
    in
    if r.success then r.value else { failed = true; };
in
if args.one != null then
  inspect args.one cfgs.${args.one}
else
  {
    nixVersion = builtins.nixVersion;
    hosts = builtins.mapAttrs guarded (
      if args.only == null then cfgs else builtins.intersectAttrs (names args.only) cfgs
    );
  }
