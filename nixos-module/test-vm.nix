# The flake's VM check: a NixOS host with the role boots, the agent starts
# as its service, a container is built from a local channel (the test
# fixture channel, with busybox and the mini-init from nixpkgs' static
# packages) and an alias is fetched over HTTPS with the agent's local CA;
# the cleanup timer is there and a dry run answers.
{ pkgs, module }:

let
  channel = pkgs.runCommand "devhost-fixture-channel" {
    nativeBuildInputs = [ pkgs.pkgsStatic.stdenv.cc pkgs.xz ];
  } ''
    mkdir -p stage
    cp -r ${../tests/fixtures/channel} stage/nixexprs
    chmod -R u+w stage/nixexprs
    mkdir -p stage/nixexprs/nixpkgs/busybox/bin
    cp ${pkgs.pkgsStatic.busybox}/bin/busybox stage/nixexprs/nixpkgs/busybox/bin/busybox
    $CC -static -Os -o stage/nixexprs/nixpkgs/busybox/bin/mini-init ${../tests/fixtures/notify/mini-init.c}
    mkdir -p $out
    tar -C stage -cJf $out/nixexprs.tar.xz nixexprs
  '';
in
pkgs.testers.runNixOSTest {
  name = "devhost-role";
  nodes.host = { ... }: {
    imports = [ module ];
    virtualisation.memorySize = 2048;
    virtualisation.diskSize = 4096;
    flyingcircus.roles.devhost = {
      enable = true;
      publicAddress = "dev.test";
      acme.mode = "local-ca";
      containerBaseImports = [ "<fc/nixos>" ];
      settings.nix.extra_args = [ "--option" "substituters" "" ];
    };
    # The channel's expressions and what they build, without the internet.
    nix.settings.substituters = pkgs.lib.mkForce [ ];
    system.extraDependencies = [ channel pkgs.pkgsStatic.busybox ];
  };

  testScript = ''
    host.wait_for_unit("devhost.service")
    host.succeed("test -S /run/devhost/agent.sock")
    host.succeed("systemctl list-timers devhost-cleanup.timer | grep -q devhost-cleanup")
    host.succeed(
        "devhost ensure demo file://${channel}/nixexprs.tar.xz www --upstream http:80"
    )
    host.succeed("devhost status demo | grep -q 'state: *running'")
    body = host.succeed(
        "curl -sS --fail --cacert /var/lib/devhost/certs/local-ca/root.pem"
        " --resolve www.demo.dev.test:443:127.0.0.1 https://www.demo.dev.test/"
    )
    assert "demo" in body, body
    host.succeed("getent hosts demo")
    # A command in it, and the package's completions and manual pages.
    assert host.succeed("echo hi | devhost exec demo -- cat").strip() == "hi"
    host.succeed("test -e /run/current-system/sw/share/bash-completion/completions/devhost.bash")
    host.succeed("test -e /run/current-system/sw/share/man/man1/devhost-exec.1.gz")
    host.succeed("devhost cleanup --dry-run | grep -q 'demo'")
    # Restarting the agent leaves the container running.
    host.succeed("systemctl restart devhost.service")
    host.wait_for_unit("devhost.service")
    host.succeed("devhost status demo | grep -q 'state: *running'")
    host.succeed("devhost destroy demo")
  '';
}
