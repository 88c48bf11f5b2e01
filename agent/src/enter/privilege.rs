//! What a container's init may do, read from its `/proc/PID/status`: the
//! capability sets, `no_new_privs` and the seccomp mode. Whatever the agent
//! runs in the container gets exactly these (pure parsing, tested here).

/// The privilege of a process, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privilege {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
}

/// Parse a `/proc/PID/status` text.
pub fn parse_status(status: &str) -> Result<Privilege, String> {
    let field = |key: &str| -> Result<&str, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .ok_or_else(|| format!("/proc status has no {key} line"))
    };
    let hex = |key: &str| -> Result<u64, String> {
        let v = field(key)?;
        u64::from_str_radix(v, 16).map_err(|_| format!("{key}: {v:?} is not hexadecimal"))
    };
    let num = |key: &str| -> Result<u8, String> {
        let v = field(key)?;
        v.parse()
            .map_err(|_| format!("{key}: {v:?} is not a number"))
    };
    Ok(Privilege {
        inheritable: hex("CapInh")?,
        permitted: hex("CapPrm")?,
        effective: hex("CapEff")?,
        bounding: hex("CapBnd")?,
        ambient: hex("CapAmb")?,
        no_new_privs: num("NoNewPrivs")? == 1,
        seccomp: num("Seccomp")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsystemd\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n\
CapInh:\t0000000000000000\nCapPrm:\t00000000fdecbfff\nCapEff:\t00000000fdecbfff\n\
CapBnd:\t00000000fdecbfff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n\
Seccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\n";

    #[test]
    fn an_inits_privilege() {
        assert_eq!(
            parse_status(STATUS).unwrap(),
            Privilege {
                inheritable: 0,
                permitted: 0xfdec_bfff,
                effective: 0xfdec_bfff,
                bounding: 0xfdec_bfff,
                ambient: 0,
                no_new_privs: false,
                seccomp: 2,
            }
        );
    }

    #[test]
    fn a_missing_or_garbled_field_is_an_error() {
        assert_eq!(
            parse_status("CapInh:\t0\n").unwrap_err(),
            "/proc status has no CapPrm line"
        );
        let garbled = STATUS.replace("CapBnd:\t00000000fdecbfff", "CapBnd:\tzz");
        assert_eq!(
            parse_status(&garbled).unwrap_err(),
            "CapBnd: \"zz\" is not hexadecimal"
        );
        assert_eq!(
            parse_status(&STATUS.replace("Seccomp:\t2\n", "")).unwrap_err(),
            "/proc status has no Seccomp line",
            "Seccomp_filters is not Seccomp"
        );
    }
}
