//! Reading the command line without panicking. Arguments come as the OS
//! gives them (any bytes): one that is not UTF-8 is refused with a message
//! naming its position and what it looks like, before anything else
//! happens (`std::env::args` would panic on it). Whole numbers are read by
//! [`whole`], which names the range it wants, and every front-end turns a
//! clap error into its message and exit status 2 through [`parse`].

use super::{EXIT_OK, EXIT_USAGE};
use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// `position` counts from 1, the program's name not included.
    #[error("argument {position} is not valid UTF-8: {lossy:?}")]
    NotUtf8 { position: usize, lossy: String },
}

/// `args` (the program's name not included) as strings, or which one is
/// not UTF-8.
pub fn utf8(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, ArgError> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.into_string().map_err(|a| ArgError::NotUtf8 {
                position: i + 1,
                lossy: a.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// This process's arguments after the program's name; on one that is not
/// UTF-8 the message is printed and `Err` is the exit status (2).
pub fn from_env() -> Result<Vec<String>, i32> {
    utf8(std::env::args_os().skip(1)).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// Parse `args` (after the program's name) for the front-end `name`: a
/// clap error (wrong usage, or `--help`) is printed and `Err` is its exit
/// status (2, or 0 for help and version).
pub fn parse<P: clap::Parser>(name: &str, args: &[String]) -> Result<P, i32> {
    P::try_parse_from(std::iter::once(name).chain(args.iter().map(String::as_str))).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            EXIT_USAGE
        } else {
            EXIT_OK
        }
    })
}

/// A clap value parser for a whole number from `min` to `max`: a sign, a
/// fraction, a word or too many digits are refused naming the range (clap
/// adds the value and the option). Give the option
/// `allow_negative_numbers = true` so that `-1` reaches it instead of
/// being taken for an option.
pub fn whole<T>(min: u64, max: u64) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: TryFrom<u64>,
{
    move |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn utf8_arguments_pass_as_they_are() {
        let args = ["ensure", "web01", "/c"].map(OsString::from);
        assert_eq!(
            utf8(args),
            Ok(vec!["ensure".into(), "web01".into(), "/c".into()])
        );
    }

    #[test]
    fn an_argument_that_is_not_utf8_is_named_by_position() {
        let args = vec![
            OsString::from("ensure"),
            OsString::from_vec(b"web\xff01".to_vec()),
        ];
        let e = utf8(args).unwrap_err();
        assert_eq!(
            e,
            ArgError::NotUtf8 {
                position: 2,
                lossy: "web\u{fffd}01".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "argument 2 is not valid UTF-8: \"web\u{fffd}01\""
        );
    }

    #[test]
    fn whole_numbers_in_their_range() {
        let days = whole::<u32>(1, 90);
        assert_eq!(days("1"), Ok(1));
        assert_eq!(days("90"), Ok(90));
        for bad in ["0", "91", "-1", "1.5", "two", "", "99999999999999999999999"] {
            assert_eq!(
                days(bad),
                Err("must be a whole number from 1 to 90".to_string()),
                "{bad:?}"
            );
        }
        let lines = whole::<usize>(0, u32::MAX as u64);
        assert_eq!(lines("0"), Ok(0));
    }
}
