//! Tiny helpers shared by the examples: `--flag value` parsing and the device flag.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

/// `--name value` pairs from the command line (`--name` alone means `true`).
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args()`; `--help` prints `usage` and exits.
    pub fn parse(usage: &str) -> Self {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{usage}");
                std::process::exit(0);
            }
            let Some(name) = arg.strip_prefix("--") else {
                eprintln!("unexpected argument `{arg}`\n\n{usage}");
                std::process::exit(2);
            };
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next().unwrap(),
                _ => "true".to_owned(),
            };
            values.insert(name.to_owned(), value);
        }
        Self { values }
    }

    /// The value of `--name`, or `default`; exits with a message if it does not parse.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: cannot parse `{text}`");
                std::process::exit(2);
            }),
        }
    }

    /// The output folder (`--out`, default `out/<example>`).
    pub fn out_dir(&self, example: &str) -> PathBuf {
        PathBuf::from(self.get("out", format!("out/{example}")))
    }

    /// The device named by `--device` (default: the build's default device, flex on CPU).
    pub fn device(&self) -> burn::tensor::Device {
        let name: String = self.get("device", "default".to_owned());
        flowforge::device(&name).unwrap_or_else(|e| {
            eprintln!("--device: {e}");
            std::process::exit(2);
        })
    }
}
