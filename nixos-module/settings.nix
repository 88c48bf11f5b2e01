# The role's options rendered to the agent's configuration (the attribute
# set that ./default.nix writes as /etc/devhost/agent.toml). Builtins only:
# the agent's own tests evaluate it with plain `nix-instantiate` and parse
# the result with the agent's config loader. `cfg.settings` is merged last,
# key by key, so every key of docs/configuration.md can be set or overridden.
cfg:
let
  # Drop nulls (TOML has none): an unset option leaves the agent's default.
  clean = attrs:
    builtins.listToAttrs (builtins.filter (kv: kv.value != null)
      (map (name: { inherit name; value = attrs.${name}; }) (builtins.attrNames attrs)));

  # Right wins; attribute sets merge recursively, anything else is replaced.
  merge = left: right:
    left // builtins.mapAttrs
      (name: value:
        if builtins.isAttrs value && builtins.isAttrs (left.${name} or null)
        then merge left.${name} value
        else value)
      right;

  limits = cfg.defaultLimits;

  rendered = {
    paths = {
      # On NixOS /etc/hosts belongs to the system configuration (a link into
      # the store, rewritten by every switch); container names resolve
      # through nss-mymachines instead, and the agent keeps its block here
      # for tools that read a hosts file.
      hosts_file = "/var/lib/devhost/hosts";
    };
    access = {
      admin_group = cfg.adminGroup;
      user_group = cfg.userGroup;
    };
    network = {
      pool = cfg.addressPool;
      nat_interface = cfg.natInterface;
    };
    nix = {
      base_imports = cfg.containerBaseImports;
      extra_config = cfg.containerExtraConfig;
    };
    edge = {
      enable = cfg.enableAliasProxy;
      public_domain = cfg.publicAddress;
    };
    certs = clean {
      mode = cfg.acme.mode;
      acme_directory = cfg.acme.directory;
      acme_contact = if cfg.acme.email == null then null else [ cfg.acme.email ];
    };
    dns = clean {
      enable = cfg.dns.enable;
      addresses = if cfg.dns.enable then cfg.dns.addresses else null;
    };
    cleanup = {
      disable_after_days = cfg.disableAfter;
      delete_after_days = cfg.deleteAfter;
      count_activity = cfg.countActivity;
    };
    metrics = {
      listen = cfg.metrics.listen;
      per_container = cfg.metrics.perContainer;
    };
    sleep = {
      after = cfg.sleepAfter;
    };
    limits = clean {
      memory_max = limits.memoryMax;
      cpu_percent = limits.cpuPercent;
      tasks_max = limits.tasksMax;
      io_weight = limits.ioWeight;
    };
  };
in
merge rendered cfg.settings
