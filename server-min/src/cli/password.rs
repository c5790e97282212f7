//! A new password for `user add` / `user passwd`: from `--password-file`, from standard input
//! (`--password-stdin`, first line), or asked twice on the terminal with echo off.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use super::CliError;

/// Where the password comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The password, in zeroized memory.
pub fn read(args: &PasswordArgs, user: &str) -> Result<Zeroizing<String>, CliError> {
    if let Some(path) = &args.password_file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
        })?);
        return first_line(&text, &format!("password file {}", path.display()));
    }
    let stdin = std::io::stdin();
    if args.password_stdin || !stdin.is_terminal() {
        let mut line = Zeroizing::new(String::new());
        stdin.lock().read_line(&mut line).map_err(|e| {
            CliError::Usage(format!("cannot read the password from standard input: {e}"))
        })?;
        return first_line(&line, "standard input");
    }
    let first = ask(&format!("New password for {user}: "))?;
    let second = ask("Repeat it: ")?;
    if *first != *second {
        return Err(CliError::Usage(
            "the two passwords differ; nothing was changed".into(),
        ));
    }
    Ok(first)
}

fn first_line(text: &str, origin: &str) -> Result<Zeroizing<String>, CliError> {
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(CliError::Usage(format!(
            "the password from {origin} is empty; give it on the first line"
        )));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Restores the terminal's settings when dropped (also on errors).
struct EchoOff<'a> {
    fd: std::io::StdinLock<'a>,
    saved: Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

fn ask(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    let term_err = |e: std::io::Error| CliError::Failed(format!("the terminal failed: {e}"));
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let lock = std::io::stdin().lock();
    let saved = tcgetattr(&lock).map_err(|e| term_err(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes -= LocalModes::ECHO;
    tcsetattr(&lock, OptionalActions::Now, &quiet).map_err(|e| term_err(e.into()))?;
    let mut guard = EchoOff { fd: lock, saved };
    let mut line = Zeroizing::new(String::new());
    let read = guard.fd.read_line(&mut line);
    drop(guard);
    let _ = writeln!(err);
    read.map_err(term_err)?;
    first_line(&line, "the terminal")
}
