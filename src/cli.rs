//! Command-line plumbing for the examples (and for projects started from them).
//!
//! `--name value` flags, the output folder and the device, with every mistake a user can make on
//! a command line — an unknown argument, a value that does not parse, a negative count, an output
//! folder that cannot be written — reported as a typed [`ArgError`] *before* any training starts,
//! so a typo never costs a two-minute run and never panics.
//!
//! ```
//! use flowforge::cli::{ArgError, Args};
//!
//! let args = Args::from_iter(["--steps", "200", "--lr", "3e-4"], "demo [--steps N] [--lr X]")?;
//! assert_eq!(args.count("steps", 3000)?, 200);
//! assert_eq!(args.get("lr", 1e-3)?, 3e-4);
//! let negative = Args::from_iter(["--samples", "-5"], "demo [--samples N]")?;
//! assert!(matches!(negative.count("samples", 10), Err(ArgError::Negative { .. })));
//! # Ok::<(), ArgError>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

/// What can be wrong with a command line.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// `--help` was given: not a failure; the message is the usage text.
    #[error("{0}")]
    Help(String),
    /// An argument that is not a `--flag`.
    #[error("unexpected argument `{argument}`\n\n{usage}")]
    Unexpected {
        /// The argument as given.
        argument: String,
        /// The program's usage text.
        usage: String,
    },
    /// A flag the program does not know (a typo would otherwise be silently ignored).
    #[error("unknown flag --{flag}\n\n{usage}")]
    UnknownFlag {
        /// The flag without its dashes.
        flag: String,
        /// The program's usage text.
        usage: String,
    },
    /// A value that does not parse as the flag's type.
    #[error("--{flag}: cannot read `{value}` as {expected}")]
    Parse {
        /// The flag without its dashes.
        flag: String,
        /// The value as given.
        value: String,
        /// The type that was expected.
        expected: &'static str,
    },
    /// A count (samples, steps, batch size) that is negative.
    #[error("--{flag}: a count cannot be negative (got {value})")]
    Negative {
        /// The flag without its dashes.
        flag: String,
        /// The value as given.
        value: String,
    },
    /// A count that must be positive was zero.
    #[error("--{flag}: must be at least 1 (got 0)")]
    Zero {
        /// The flag without its dashes.
        flag: String,
    },
    /// A value outside the flag's list of choices.
    #[error("--{flag}: `{value}` is not one of {choices}")]
    Choice {
        /// The flag without its dashes.
        flag: String,
        /// The value as given.
        value: String,
        /// The accepted values, comma-separated.
        choices: String,
    },
    /// The output folder cannot be created or written.
    #[error("output folder {path} is not writable: {reason}")]
    OutputFolder {
        /// The folder.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The requested device is not compiled in or unknown.
    #[error("--device: {0}")]
    Device(#[from] flowforge_core::Error),
}

/// Parsed `--name value` pairs (`--name` alone means `true`).
#[derive(Debug, Clone)]
pub struct Args {
    values: HashMap<String, String>,
    usage: String,
}

impl Args {
    /// Parses the process's arguments.
    ///
    /// # Errors
    /// [`ArgError::Help`] for `--help`/`-h`, [`ArgError::Unexpected`] for a bare word, and
    /// [`ArgError::UnknownFlag`] for a flag the usage text does not mention.
    pub fn parse(usage: &str) -> Result<Self, ArgError> {
        Self::from_iter(std::env::args().skip(1), usage)
    }

    /// Parses the given arguments (without the program name). Flags are checked against the
    /// usage text: every `--flag` must appear in it, so a misspelt flag is an error rather than
    /// a silently ignored default.
    ///
    /// # Errors
    /// As [`Args::parse`].
    pub fn from_iter<I, S>(arguments: I, usage: &str) -> Result<Self, ArgError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values = HashMap::new();
        let mut arguments = arguments.into_iter().map(Into::into).peekable();
        while let Some(argument) = arguments.next() {
            if argument == "--help" || argument == "-h" {
                return Err(ArgError::Help(usage.to_owned()));
            }
            let Some(name) = argument.strip_prefix("--") else {
                return Err(ArgError::Unexpected { argument, usage: usage.to_owned() });
            };
            if !mentions_flag(usage, name) {
                return Err(ArgError::UnknownFlag { flag: name.to_owned(), usage: usage.to_owned() });
            }
            // A following word is this flag's value unless it is itself a flag; negative
            // numbers ("-5") are values, so only "--" marks the next flag.
            let value = match arguments.peek() {
                Some(next) if !next.starts_with("--") => arguments.next().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            values.insert(name.to_owned(), value);
        }
        Ok(Self { values, usage: usage.to_owned() })
    }

    /// The value of `--name` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// [`ArgError::Parse`] if the value does not parse.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, ArgError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| ArgError::Parse {
                flag: name.to_owned(),
                value: text.clone(),
                expected: std::any::type_name::<T>(),
            }),
        }
    }

    /// Whether the switch `--name` was given (`--name`, `--name true`; `--name false` is off).
    ///
    /// # Errors
    /// [`ArgError::Parse`] for a value other than `true`/`false`.
    pub fn flag(&self, name: &str) -> Result<bool, ArgError> {
        self.get(name, false)
    }

    /// A non-negative count (`--samples`, `--steps`, …), or `default`.
    ///
    /// # Errors
    /// [`ArgError::Negative`] for a negative number, [`ArgError::Parse`] for anything else that
    /// is not a whole number.
    pub fn count(&self, name: &str, default: usize) -> Result<usize, ArgError> {
        match self.values.get(name) {
            Some(text) if text.trim().parse::<i128>().is_ok_and(|v| v < 0) => {
                Err(ArgError::Negative { flag: name.to_owned(), value: text.clone() })
            }
            _ => self.get(name, default),
        }
    }

    /// A count that must be at least 1 (batch sizes, sample counts).
    ///
    /// # Errors
    /// As [`Args::count`], and [`ArgError::Zero`] for 0.
    pub fn positive(&self, name: &str, default: usize) -> Result<usize, ArgError> {
        match self.count(name, default)? {
            0 => Err(ArgError::Zero { flag: name.to_owned() }),
            n => Ok(n),
        }
    }

    /// One of a fixed list of words (`--method cfm|ot-cfm`), or `default`.
    ///
    /// # Errors
    /// [`ArgError::Choice`] for any other value.
    pub fn choice(&self, name: &str, default: &str, choices: &[&str]) -> Result<String, ArgError> {
        let value = self.values.get(name).map_or(default, String::as_str);
        if choices.contains(&value) {
            Ok(value.to_owned())
        } else {
            Err(ArgError::Choice { flag: name.to_owned(), value: value.to_owned(), choices: choices.join(", ") })
        }
    }

    /// The output folder (`--out`, default `out/<example>`), created and checked writable now,
    /// before any work is done.
    ///
    /// # Errors
    /// [`ArgError::OutputFolder`] if it cannot be created or a file cannot be written in it.
    pub fn out_dir(&self, example: &str) -> Result<PathBuf, ArgError> {
        let folder = PathBuf::from(self.get("out", format!("out/{example}"))?);
        ensure_writable(&folder)?;
        Ok(folder)
    }

    /// The device named by `--device` (default: the build's default device, flex on CPU).
    ///
    /// # Errors
    /// [`ArgError::Device`] for a backend that is unknown or not compiled in.
    pub fn device(&self) -> Result<burn::tensor::Device, ArgError> {
        let name: String = self.get("device", "default".to_owned())?;
        Ok(crate::device(&name)?)
    }

    /// The usage text given to [`Args::parse`].
    pub fn usage(&self) -> &str {
        &self.usage
    }
}

/// Whether `usage` mentions `--name` as a whole flag (`--steps` does not match `--steps-x`).
fn mentions_flag(usage: &str, name: &str) -> bool {
    let needle = format!("--{name}");
    usage.match_indices(&needle).any(|(at, _)| {
        let rest = &usage[at + needle.len()..];
        !rest.starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// Creates `folder` and proves a file can be written there (then removes the probe).
///
/// # Errors
/// [`ArgError::OutputFolder`] naming the folder and the operating system's reason.
pub fn ensure_writable(folder: &Path) -> Result<(), ArgError> {
    let fail = |e: std::io::Error| ArgError::OutputFolder { path: folder.to_path_buf(), reason: e.to_string() };
    std::fs::create_dir_all(folder).map_err(fail)?;
    let probe = folder.join(".flowforge-write-probe");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Runs an example's body: prints `--help` and exits 0, prints any error with its message
/// (not its `Debug` form) and exits 1. The calling thread becomes one of the compute threads
/// first ([`crate::threads::compute_on_calling_thread`]), and the other pool threads poll for
/// work while the body runs ([`crate::threads::keep_workers_polling`]).
pub fn main(body: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    crate::threads::compute_on_calling_thread();
    let polling = crate::threads::keep_workers_polling();
    let outcome = body();
    drop(polling);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<ArgError>() {
            Some(ArgError::Help(usage)) => {
                println!("{usage}");
                ExitCode::SUCCESS
            }
            Some(arg_error) => {
                eprintln!("error: {arg_error}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &str = "demo [--steps 3000] [--samples 100] [--out DIR] [--cosine] [--method a|b] [--lr 1e-3]";

    #[test]
    fn values_switches_and_defaults() {
        let args = Args::from_iter(["--steps", "12", "--cosine", "--lr", "-0.5"], USAGE).unwrap();
        assert_eq!(args.count("steps", 1).unwrap(), 12);
        assert_eq!(args.count("samples", 7).unwrap(), 7);
        assert!(args.flag("cosine").unwrap());
        // A negative float is a value, not a flag.
        assert_eq!(args.get("lr", 0.0).unwrap(), -0.5);
    }

    #[test]
    fn negative_and_zero_counts_are_typed_errors() {
        let args = Args::from_iter(["--samples", "-5", "--steps", "0"], USAGE).unwrap();
        match args.count("samples", 1) {
            Err(ArgError::Negative { flag, value }) => assert_eq!((flag.as_str(), value.as_str()), ("samples", "-5")),
            other => panic!("expected Negative, got {other:?}"),
        }
        assert!(matches!(args.positive("steps", 1), Err(ArgError::Zero { .. })));
        let words = Args::from_iter(["--samples", "many"], USAGE).unwrap();
        assert!(matches!(words.count("samples", 1), Err(ArgError::Parse { .. })));
    }

    #[test]
    fn unknown_flags_bare_words_and_bad_choices() {
        assert!(matches!(Args::from_iter(["--step", "3"], USAGE), Err(ArgError::UnknownFlag { .. })));
        assert!(matches!(Args::from_iter(["steps"], USAGE), Err(ArgError::Unexpected { .. })));
        assert!(matches!(Args::from_iter(["--help"], USAGE), Err(ArgError::Help(_))));
        let args = Args::from_iter(["--method", "c"], USAGE).unwrap();
        let error = args.choice("method", "a", &["a", "b"]).unwrap_err();
        assert_eq!(error.to_string(), "--method: `c` is not one of a, b");
    }

    #[test]
    fn unwritable_output_folder_is_reported_before_any_work() {
        let root = std::env::temp_dir().join(format!("flowforge-cli-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // A regular file where a folder is wanted: cannot be created on any platform or user.
        let blocker = root.join("a-file");
        std::fs::write(&blocker, b"x").unwrap();
        let target = blocker.join("out");
        let args = Args::from_iter(["--out".to_owned(), target.display().to_string()], USAGE).unwrap();
        match args.out_dir("demo") {
            Err(ArgError::OutputFolder { path, .. }) => assert_eq!(path, target),
            other => panic!("expected OutputFolder, got {other:?}"),
        }
        let fine = root.join("fine");
        let args = Args::from_iter(["--out".to_owned(), fine.display().to_string()], USAGE).unwrap();
        assert_eq!(args.out_dir("demo").unwrap(), fine);
        assert!(std::fs::read_dir(&fine).unwrap().next().is_none(), "the probe file is removed");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
