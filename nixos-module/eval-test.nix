# Evaluates the role module with nixpkgs' module system (`lib` from a
# nixpkgs checkout) and stand-ins for the parts of nixpkgs it reads (the
# package, pkgs.formats.toml) and for the NixOS options it sets (declared
# loosely here). Returns the facts the agent's test checks as JSON: the
# rendered agent configuration, the service, timers, sysctls, firewall,
# sudo rules and the failed assertions. Used by agent/tests/module.rs.
{ lib, role ? { } }:

let
  fakeStore = name: "/nix/store/00000000000000000000000000000000-${name}";
  package = { type = "derivation"; name = "devhost"; outPath = fakeStore "devhost"; meta = { }; };
  pkgs = {
    formats.toml = { }: {
      type = lib.types.attrsOf lib.types.anything;
      # The test reads the value back instead of a generated file.
      generate = name: value: { generated = name; inherit value; };
    };
    callPackage = _: _: package;
    nftables = fakeStore "nftables";
    iproute2 = fakeStore "iproute2";
    util-linux = fakeStore "util-linux";
    btrfs-progs = fakeStore "btrfs-progs";
  };
  loose = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
  stubs = {
    options = {
      assertions = lib.mkOption { type = lib.types.listOf lib.types.unspecified; default = [ ]; };
      environment = loose;
      boot = loose;
      networking = loose;
      security = loose;
      systemd = loose;
      nix = loose;
    };
    config = {
      nix.package = fakeStore "nix";
      systemd.package = fakeStore "systemd";
    };
  };
  eval = lib.evalModules {
    modules = [
      ./default.nix
      stubs
      { _module.args.pkgs = pkgs; }
      { flyingcircus.roles.devhost = role; }
    ];
  };
  c = eval.config;
  services = c.systemd.services or { };
  timers = c.systemd.timers or { };
in
{
  agentConfig = c.environment.etc."devhost/agent.toml".source.value or null;
  service = services.devhost.serviceConfig or null;
  servicePath = services.devhost.path or null;
  cleanupService = services.devhost-cleanup.serviceConfig.ExecStart or null;
  cleanupTimer = timers.devhost-cleanup.timerConfig or null;
  selftestTimer = timers ? devhost-selftest;
  sysctl = c.boot.kernel.sysctl or { };
  enableContainers = c.boot.enableContainers or null;
  tcpPorts = c.networking.firewall.allowedTCPPorts or [ ];
  udpPorts = c.networking.firewall.allowedUDPPorts or [ ];
  sudo = c.security.sudo.extraRules or [ ];
  systemPackages = map (p: p.name) (c.environment.systemPackages or [ ]);
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  # Every option has a type and a description.
  undocumented = lib.filter (o: o.description or null == null || o.type or null == null)
    (lib.collect lib.isOption eval.options.flyingcircus.roles.devhost);
}
