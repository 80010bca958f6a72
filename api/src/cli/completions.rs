//! `retrace completions <shell>`: the shell's completion script for every
//! subcommand and flag, generated from the same definition the command line
//! is parsed with, so it never falls behind.
//!
//! Owns writing the script to stdout. It must never install anything: where
//! a script goes is the user's shell's business (see `docs/cli.md`).

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use super::error::{Error, Result};

/// Options of `retrace completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs, out: &mut impl Write) -> Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "retrace", &mut script);
    out.write_all(&script)
        .map_err(|e| Error::io("cannot write to standard output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_holds_together() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            run(CompletionsArgs { shell }, &mut out).unwrap_or_else(|e| panic!("{shell}: {e}"));
            let script = String::from_utf8_lossy(&out);
            assert!(script.contains("redrive"), "{shell}: {script}");
        }
    }
}
