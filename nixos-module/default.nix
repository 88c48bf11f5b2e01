# The devhost role: `flyingcircus.roles.devhost.*`, compatible with the old
# role's options (same names, meanings and defaults) plus devhost's own. It
# installs the agent as a systemd service, its configuration (rendered by
# ./settings.nix), the daily cleanup timer, the host settings containers
# need, firewall ports, and sudo rules for the commands batou calls.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf mkDefault types literalExpression;
  cfg = config.flyingcircus.roles.devhost;
  d = import ./defaults.nix;
  toml = pkgs.formats.toml { };
  configFile = toml.generate "devhost-agent.toml" (import ./settings.nix cfg);
  devhost = "${cfg.package}/bin/devhost";
  # The port of `metrics.listen` (`ADDRESS:PORT`, `[V6]:PORT`).
  metricsPort = lib.toInt (lib.last (lib.splitString ":" cfg.metrics.listen));
  nullOrInt = description: mkOption {
    type = types.nullOr types.ints.positive;
    default = null;
    inherit description;
  };
in
{
  options.flyingcircus.roles.devhost = {
    enable = mkEnableOption "the devhost role: NixOS development containers run by the devhost agent";

    virtualisationType = mkOption {
      type = types.enum [ "vm" "container" ];
      default = d.virtualisationType;
      description = ''
        How environments run. The old role also offered `vm`; devhost runs
        systemd-nspawn containers only, and refuses `vm` with an assertion.
      '';
    };

    enableAliasProxy = mkOption {
      type = types.bool;
      default = if cfg.testing then false else d.enableAliasProxy;
      defaultText = literalExpression "!testing";
      description = ''
        Serve `ALIAS.NAME.publicAddress` over HTTPS through the agent's
        embedded proxy (ports 80 and 443). Off in testing mode, as before.
      '';
    };

    publicAddress = mkOption {
      type = types.str;
      default = d.publicAddress;
      example = "dev.example.com";
      description = "The public domain: containers are served as `NAME.publicAddress` and `ALIAS.NAME.publicAddress`.";
    };

    cleanupContainers = mkOption {
      type = types.bool;
      default = d.cleanupContainers;
      description = ''
        Run `devhost cleanup` daily at 03:00 (persistent: a missed run
        happens at the next boot). Containers unused for `disableAfter`
        days are stopped and disabled, for `deleteAfter` days destroyed.
        When false, `devhost cleanup` still works by hand.
      '';
    };

    testing = mkOption {
      type = types.bool;
      default = d.testing;
      description = ''
        Testing mode (old role): a periodic self-test creates a container
        from `testingChannelURL` and destroys it again; the alias proxy is
        off by default.
      '';
    };

    testingChannelURL = mkOption {
      type = types.nullOr types.str;
      default = d.testingChannelURL;
      example = "https://hydra.flyingcircus.io/build/1234/download/1/nixexprs.tar.xz";
      description = "The channel the self-test builds its container from (required when `testing` is on).";
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The devhost package (agent, `devhost`, `fc-build-dev-container`, `fc-devhost`, `nixos-container`).";
    };

    acme = {
      mode = mkOption {
        type = types.enum [ "auto" "local-ca" "dns-01" "http-01" "tls-alpn-01" ];
        default = d.acme.mode;
        description = ''
          How certificates are obtained (`certs.mode`): `dns-01` a wildcard
          per container from the agent's own zone (needs `dns.enable`),
          `http-01` / `tls-alpn-01` one certificate with every alias,
          `local-ca` the agent's own CA, `auto` dns-01 when the zone is
          served, else local-ca.
        '';
      };
      email = mkOption {
        type = types.nullOr types.str;
        default = d.acme.email;
        example = "ops@example.com";
        description = "Contact address of the ACME account (`certs.acme_contact`).";
      };
      directory = mkOption {
        type = types.str;
        default = d.acme.directory;
        description = "The ACME directory URL (`certs.acme_directory`); Let's Encrypt's by default.";
      };
    };

    dns = {
      enable = mkOption {
        type = types.bool;
        default = d.dns.enable;
        description = ''
          Serve `publicAddress` as an authoritative zone on port 53 (delegate
          it to this host with NS records), for DNS-01 wildcard certificates
          and names that exist only while their container does.
        '';
      };
      addresses = mkOption {
        type = types.listOf types.str;
        default = d.dns.addresses;
        example = [ "192.0.2.10" "2001:db8::10" ];
        description = "This host's public addresses, which the zone answers for every served name (required with `dns.enable`).";
      };
    };

    addressPool = mkOption {
      type = types.str;
      default = d.addressPool;
      description = "IPv4 block the containers' addresses come from (`network.pool`).";
    };

    natInterface = mkOption {
      type = types.str;
      default = d.natInterface;
      example = "ethsrv";
      description = "Masquerade container traffic leaving through this interface; empty: any interface that is not a container's.";
    };

    containerBaseImports = mkOption {
      type = types.listOf types.str;
      default = d.containerBaseImports;
      example = [ "<fc/nixos>" ];
      description = "Imports of every container's configuration.nix: `<search/path>` lookups in the container's channel or absolute paths.";
    };

    containerExtraConfig = mkOption {
      type = types.lines;
      default = d.containerExtraConfig;
      example = "services.openssh.enable = true;";
      description = "Nix attribute-set body added to every container's configuration.";
    };

    defaultLimits = {
      memoryMax = nullOrInt "MemoryMax of a new container in bytes (16 MiB–1024 TiB), unless its ensure sets one.";
      cpuPercent = nullOrInt "CPU quota of a new container in percent of one CPU (200: two CPUs; 1–102400).";
      tasksMax = nullOrInt "TasksMax (1–4194304) of a new container.";
      ioWeight = nullOrInt "IOWeight (1–10000) of a new container.";
    };

    disableAfter = mkOption {
      type = types.ints.positive;
      default = d.disableAfter;
      description = "Days without a deploy after which cleanup stops and disables a container.";
    };

    deleteAfter = mkOption {
      type = types.ints.positive;
      default = d.deleteAfter;
      description = "Days without a deploy after which cleanup destroys a container (more than `disableAfter`).";
    };

    countActivity = mkOption {
      type = types.bool;
      default = d.countActivity;
      description = "Count proxied requests and provisioning runs as use that postpones cleanup.";
    };

    metrics = {
      listen = mkOption {
        type = types.str;
        default = d.metrics.listen;
        example = "0.0.0.0:9469";
        description = ''
          Where the agent serves `/metrics` in the Prometheus text format
          (`metrics.listen`, `ADDRESS:PORT`); empty: not served. On
          loopback by default: scrape it from this host's Prometheus, e.g.
          `services.prometheus.scrapeConfigs = [ { job_name = "devhost";
          static_configs = [ { targets = [ "127.0.0.1:9469" ]; } ]; } ];`,
          or listen on an address a remote Prometheus reaches (and set
          `metrics.openFirewall`). The endpoint has no authentication and
          names containers.
        '';
      };
      perContainer = mkOption {
        type = types.bool;
        default = d.metrics.perContainer;
        description = ''
          Also count proxied requests and their latency per container
          (`metrics.per_container`): one series per container and status
          class, so off by default.
        '';
      };
      openFirewall = mkOption {
        type = types.bool;
        default = d.metrics.openFirewall;
        description = "Open the port of `metrics.listen` in the firewall (for a remote Prometheus).";
      };
    };

    sleepAfter = mkOption {
      type = types.str;
      default = d.sleepAfter;
      example = "2h";
      description = ''
        Put a running container to sleep (stop it, keeping its record,
        address, routes, names and certificate) after this long without use:
        `off`, or a period such as `30m`, `2h`, `1d`. The first request
        through the proxy wakes it. Containers may set their own with
        `devhost ensure NAME … --sleep-after`. Becomes `sleep.after`; the
        other `[sleep]` keys through `settings.sleep`.
      '';
    };

    adminGroup = mkOption {
      type = types.str;
      default = d.adminGroup;
      description = "Members may manage every container and run the cleanup.";
    };

    userGroup = mkOption {
      type = types.str;
      default = d.userGroup;
      description = "Members may create containers and manage their own.";
    };

    sudoGroups = mkOption {
      type = types.listOf types.str;
      default = d.sudoGroups;
      description = ''
        Groups that may run `fc-build-dev-container` (batou ≤ 2.5.4) and
        `fc-devhost` (batou ≥ 2.6) with sudo and no password, as batou calls
        them (the old role's `service` and `users`). Under sudo both act as
        the user who ran them.
      '';
    };

    settings = mkOption {
      type = toml.type;
      default = d.settings;
      example = literalExpression ''{ edge.workers = 4; certs.max_new_per_week = 20; }'';
      description = ''
        Agent configuration merged over what the options above render
        (every key of docs/configuration.md; sections merge key by key).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.virtualisationType == "container";
        message = "flyingcircus.roles.devhost.virtualisationType = \"vm\" is not supported by devhost; use \"container\".";
      }
      {
        assertion = cfg.deleteAfter > cfg.disableAfter;
        message = "flyingcircus.roles.devhost.deleteAfter (${toString cfg.deleteAfter}) must be more than disableAfter (${toString cfg.disableAfter}).";
      }
      {
        assertion = !cfg.dns.enable || cfg.dns.addresses != [ ];
        message = "flyingcircus.roles.devhost.dns.addresses must name this host's public addresses when dns.enable is on.";
      }
      {
        assertion = !cfg.testing || cfg.testingChannelURL != null;
        message = "flyingcircus.roles.devhost.testingChannelURL is required in testing mode.";
      }
      {
        assertion = !cfg.metrics.openFirewall || cfg.metrics.listen != "";
        message = "flyingcircus.roles.devhost.metrics.openFirewall needs metrics.listen (ADDRESS:PORT).";
      }
    ];

    # The agent's config; the CLIs find the socket through it as well.
    environment.etc."devhost/agent.toml".source = configFile;

    # hiPrio: our `nixos-container` wins over the one of NixOS's container module.
    environment.systemPackages = [ (lib.hiPrio cfg.package) ];
    boot.enableContainers = mkDefault false;

    boot.kernel.sysctl = {
      "net.ipv4.ip_forward" = 1;
      # Every container's inotify instances and watches count against host
      # root (who creates its user namespace). A systemd container takes
      # about 8 instances and 25 watches (the agent assumes 12 and 256,
      # `[admission]`, and refuses a boot that would not fit); at the
      # kernel's default of 128 instances about half of 50 containers die
      # at boot ("Too many open files"). These leave room for hundreds;
      # they cost kernel memory only when used. (The kernel's own default
      # for watches grows with RAM up to 1048576.)
      "fs.inotify.max_user_instances" = mkDefault 8192;
      "fs.inotify.max_user_watches" = mkDefault 1048576;
      # kernel.pid_max (each thread takes a PID): NixOS's systemd module
      # already sets the 64-bit maximum, 4194304; setting it here too
      # would define it twice.
    };

    networking.firewall.allowedTCPPorts =
      lib.optionals cfg.enableAliasProxy [ 80 443 ] ++ lib.optional cfg.dns.enable 53
      ++ lib.optional (cfg.metrics.openFirewall && cfg.metrics.listen != "") metricsPort;
    networking.firewall.allowedUDPPorts = lib.optional cfg.dns.enable 53;

    # batou calls `sudo fc-build-dev-container` (≤ 2.5.4) and `sudo
    # fc-devhost` (≥ 2.6); the front-ends then act as the user who ran sudo
    # (the agent sees that uid), so the rule gives no one more than their
    # own containers. batou reads /etc/devhost/vm-configs/NAME.json, which
    # the agent keeps.
    security.sudo.extraRules = [{
      groups = cfg.sudoGroups;
      commands = map (command: { inherit command; options = [ "NOPASSWD" ]; })
        (lib.concatMap (tool: [ "${cfg.package}/bin/${tool}" "/run/current-system/sw/bin/${tool}" ])
          [ "fc-build-dev-container" "fc-devhost" ]);
    }];

    systemd.services.devhost = {
      description = "devhost agent: NixOS development containers";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "systemd-machined.service" "nix-daemon.socket" ];
      # nix-build, systemd-nspawn, nft and ip are run by name; unshare
      # (util-linux) gives each build a PID namespace of its own; btrfs
      # makes container roots subvolumes (and limits them) on btrfs.
      path = [ config.nix.package config.systemd.package pkgs.nftables pkgs.iproute2 pkgs.util-linux pkgs.btrfs-progs ];
      environment.NIX_REMOTE = "daemon";
      # A new configuration takes effect by restarting the agent, which
      # leaves running containers alone.
      restartTriggers = [ configFile ];
      serviceConfig = {
        # The agent says READY=1 once records are reconciled and it serves.
        Type = "notify";
        ExecStart = "${devhost} agent --config /etc/devhost/agent.toml";
        Restart = "on-failure";
        RestartSec = 2;
        # Only the agent is stopped on restart: containers are units of
        # their own in machine.slice; builds die with the agent (their
        # client is killed with it and the daemon cancels them).
        KillMode = "process";
        # Stopping the agent never powers containers off.
        TimeoutStopSec = 30;
        # One descriptor per proxied connection, two with the upstream.
        LimitNOFILE = 1048576;
        # Not hardened with ProtectSystem/PrivateTmp/namespaces: the agent
        # creates network namespaces, nftables tables, container roots under
        # /var/lib and units over D-Bus, all of which those would break.
        # ProtectHome neither: nix-build keeps its channel tarball cache in
        # root's home. Nothing that installs a seccomp filter either
        # (SystemCallFilter, ProtectClock, ProtectHostname, LockPersonality,
        # RestrictRealtime, …): provisioning gives RUN a container's own
        # seccomp filters, read from its init, which the kernel refuses to a
        # filtered process.
        StateDirectory = "devhost"; # /var/lib/devhost, 0700 below
        StateDirectoryMode = "0700";
        RuntimeDirectory = "devhost"; # /run/devhost for the socket
        RuntimeDirectoryPreserve = true; # containers' notify sockets survive a restart
      };
    };

    systemd.services.devhost-cleanup = mkIf cfg.cleanupContainers {
      description = "devhost cleanup: disable and delete unused containers";
      requires = [ "devhost.service" ];
      after = [ "devhost.service" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${devhost} cleanup";
      };
    };

    systemd.timers.devhost-cleanup = mkIf cfg.cleanupContainers {
      description = "daily devhost cleanup";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = "*-*-* 03:00:00";
        Persistent = true;
        RandomizedDelaySec = "10min";
      };
    };

    systemd.services.devhost-selftest = mkIf cfg.testing {
      description = "devhost self-test: create and destroy a container";
      requires = [ "devhost.service" ];
      after = [ "devhost.service" ];
      serviceConfig.Type = "oneshot";
      script = ''
        set -eu
        name=selftest
        trap '${devhost} destroy "$name" >/dev/null || true' EXIT
        ${devhost} ensure "$name" ${lib.escapeShellArg (toString cfg.testingChannelURL)}
        ${devhost} status "$name"
      '';
    };

    systemd.timers.devhost-selftest = mkIf cfg.testing {
      description = "periodic devhost self-test";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = "hourly";
        RandomizedDelaySec = "15min";
      };
    };
  };
}
