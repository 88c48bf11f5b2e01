# The role's defaults as a plain attribute set (builtins only), shared by the
# option declarations in ./default.nix and by the agent's test that renders
# ./settings.nix without nixpkgs, so the two cannot drift apart.
{
  virtualisationType = "container";
  enableAliasProxy = true;
  publicAddress = "example.com";
  cleanupContainers = true;
  testing = false;
  testingChannelURL = null;
  acme = {
    mode = "auto";
    email = null;
    directory = "https://acme-v02.api.letsencrypt.org/directory";
  };
  dns = {
    enable = false;
    addresses = [ ];
  };
  addressPool = "10.233.0.0/16";
  natInterface = "";
  containerBaseImports = [ ];
  containerExtraConfig = "";
  defaultLimits = {
    memoryMax = null;
    cpuPercent = null;
    tasksMax = null;
    ioWeight = null;
  };
  disableAfter = 7;
  deleteAfter = 30;
  countActivity = false;
  metrics = {
    listen = "127.0.0.1:9469";
    perContainer = false;
    openFirewall = false;
  };
  sleepAfter = "off";
  adminGroup = "wheel";
  userGroup = "users";
  sudoGroups = [ "service" "users" ];
  settings = { };
}
