//! A technician's password for `enroll --force --user NAME`: from a file descriptor
//! (`--password-fd N`, one line, for scripts), a file (`--password-file PATH`, first line), or
//! asked on the controlling terminal (`/dev/tty`) with echo off.
//!
//! The terminal is switched to non-canonical mode without echo and without signal keys, and
//! this module does the line editing itself (erase, kill line, Ctrl-C, Ctrl-D), so that an
//! interrupt is a byte it sees rather than a signal that would end the process with the echo
//! still off. The terminal's settings are restored on every path (a guard, also on errors and
//! panics). The password is read into zeroized memory and never echoed or logged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::termios::{LocalModes, OptionalActions, SpecialCodeIndex, Termios};
use zeroize::{Zeroize, Zeroizing};

use crate::error::exit;
use crate::secret::SecretString;

/// The longest password accepted.
pub const MAX_PASSWORD: usize = 1024;

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `--password-fd N`.
    Fd(i32),
    /// `--password-file PATH`.
    File(PathBuf),
    /// Asked on `/dev/tty`.
    Terminal,
}

/// Why no password could be read. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "cannot read the password from file descriptor {fd} (--password-fd): {source}; \
         pass a descriptor open for reading, e.g. `--password-fd 3 3<secret-file` or a pipe on stdin with `--password-fd 0`"
    )]
    Fd { fd: i32, source: std::io::Error },
    #[error("cannot read the password file {path} (--password-file): {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the password from {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("the password from {origin} is empty; give the password on its first line")]
    Empty { origin: String },
    #[error("the password from {origin} is longer than {MAX_PASSWORD} bytes")]
    TooLong { origin: String },
    #[error("the password from {origin} is not valid UTF-8")]
    NotUtf8 { origin: String },
    #[error(
        "no terminal to ask for {user}'s password ({source}); pass it with --password-fd N or --password-file PATH"
    )]
    NoTerminal {
        user: String,
        source: std::io::Error,
    },
    #[error("the terminal failed while reading the password: {0}")]
    Terminal(std::io::Error),
    #[error("password entry interrupted")]
    Interrupted,
}

impl PasswordError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PasswordError::Terminal(_) | PasswordError::Interrupted => exit::FAILURE,
            _ => exit::USAGE,
        }
    }
}

/// Reads the password of `user`; `prompt` is shown on the terminal when it is asked there.
pub fn read_password(
    source: &PasswordSource,
    user: &str,
    prompt: &str,
) -> Result<SecretString, PasswordError> {
    match source {
        PasswordSource::Fd(fd) => read_fd(*fd),
        PasswordSource::File(path) => read_file(path),
        PasswordSource::Terminal => ask_terminal(user, prompt),
    }
}

/// The first line of what file descriptor `fd` gives. The descriptor is opened anew through
/// `/proc/self/fd` (no unsafe code takes it over), non-blocking at first so that a pipe whose
/// writer already left does not block the open.
pub fn read_fd(fd: i32) -> Result<SecretString, PasswordError> {
    let err = |source| PasswordError::Fd { fd, source };
    if fd < 0 {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a descriptor number",
        )));
    }
    let path = format!("/proc/self/fd/{fd}");
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(&path)
        .map_err(err)?;
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| err(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| err(e.into()))?;
    read_line(file, &format!("file descriptor {fd} (--password-fd)"))
}

/// The first line of a file; warns when group or others may read it.
pub fn read_file(path: &Path) -> Result<SecretString, PasswordError> {
    let err = |source| PasswordError::File {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let mode = file.metadata().map_err(err)?.permissions().mode();
    if mode & 0o044 != 0 {
        tracing::warn!(file = %path.display(), "the password file is readable by group or others; restrict it with `chmod 600`");
    }
    read_line(file, &format!("{} (--password-file)", path.display()))
}

/// One line of `input` (up to `\n` or the end), without its line ending.
pub fn read_line(mut input: impl Read, origin: &str) -> Result<SecretString, PasswordError> {
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if line.len() == MAX_PASSWORD {
                    return Err(PasswordError::TooLong {
                        origin: origin.to_owned(),
                    });
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(PasswordError::Read {
                    origin: origin.to_owned(),
                    source,
                });
            }
        }
    }
    byte.zeroize();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    finish(line, origin)
}

fn finish(line: Zeroizing<Vec<u8>>, origin: &str) -> Result<SecretString, PasswordError> {
    if line.is_empty() {
        return Err(PasswordError::Empty {
            origin: origin.to_owned(),
        });
    }
    let text = std::str::from_utf8(&line).map_err(|_| PasswordError::NotUtf8 {
        origin: origin.to_owned(),
    })?;
    Ok(SecretString::new(text.to_owned()))
}

/// The terminal's editing keys, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub interrupt: u8,
    pub eof: u8,
    pub erase: u8,
    pub kill: u8,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            interrupt: 0x03,
            eof: 0x04,
            erase: 0x7f,
            kill: 0x15,
        }
    }
}

/// Line editing of a password typed without echo: Enter ends it, erase (and Backspace) drops
/// the last character, kill drops the line, interrupt aborts, EOF ends it (an empty one is an
/// error); other control characters are ignored.
pub fn edit(
    mut input: impl Iterator<Item = std::io::Result<u8>>,
    keys: Keys,
) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    loop {
        let b = match input.next() {
            None => break,
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(PasswordError::Terminal(e)),
        };
        match b {
            b'\r' | b'\n' => break,
            _ if b == keys.interrupt && b != 0 => return Err(PasswordError::Interrupted),
            _ if b == keys.eof && b != 0 => break,
            _ if b == keys.kill && b != 0 => line.clear(),
            _ if (b == keys.erase && b != 0) || b == 0x08 || b == 0x7f => {
                // One character, which may be several UTF-8 bytes.
                while let Some(last) = line.pop() {
                    if last & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            _ if b < 0x20 => {}
            _ => {
                if line.len() == MAX_PASSWORD {
                    return Err(PasswordError::TooLong {
                        origin: "the terminal".into(),
                    });
                }
                line.push(b);
            }
        }
    }
    Ok(line)
}

/// Puts the terminal's settings back when dropped.
struct Restore<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Err(e) = rustix::termios::tcsetattr(self.tty, OptionalActions::Now, &self.saved) {
            tracing::warn!(error = %e, "cannot restore the terminal's settings; run `stty sane`");
        }
    }
}

fn ask_terminal(user: &str, prompt: &str) -> Result<SecretString, PasswordError> {
    let no_tty = |source: std::io::Error| PasswordError::NoTerminal {
        user: user.to_owned(),
        source,
    };
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let saved = rustix::termios::tcgetattr(&tty).map_err(|e| no_tty(e.into()))?;
    let keys = Keys {
        interrupt: saved.special_codes[SpecialCodeIndex::VINTR],
        eof: saved.special_codes[SpecialCodeIndex::VEOF],
        erase: saved.special_codes[SpecialCodeIndex::VERASE],
        kill: saved.special_codes[SpecialCodeIndex::VKILL],
    };
    let mut quiet = saved.clone();
    quiet
        .local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| (&tty).flush())
        .map_err(PasswordError::Terminal)?;
    rustix::termios::tcsetattr(&tty, OptionalActions::Flush, &quiet)
        .map_err(|e| PasswordError::Terminal(e.into()))?;
    let restore = Restore { tty: &tty, saved };
    let bytes = std::iter::from_fn(|| {
        let mut b = [0u8; 1];
        loop {
            match (&tty).read(&mut b) {
                Ok(0) => return None,
                Ok(_) => return Some(Ok(b[0])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
    });
    let line = edit(bytes, keys);
    drop(restore);
    // The Enter the user typed was not echoed.
    let _ = (&tty).write_all(b"\n");
    finish(line?, "the terminal")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(bytes: &[u8]) -> Result<String, String> {
        edit(bytes.iter().map(|b| Ok(*b)), Keys::default())
            .map(|l| String::from_utf8(l.to_vec()).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn line_editing_without_echo() {
        assert_eq!(typed(b"hunter2\r").unwrap(), "hunter2");
        assert_eq!(typed(b"hunter2\n").unwrap(), "hunter2");
        assert_eq!(typed(b"hunx\x7fter2\n").unwrap(), "hunter2");
        assert_eq!(typed(b"hunx\x08ter2\n").unwrap(), "hunter2");
        assert_eq!(typed(b"wrong\x15hunter2\n").unwrap(), "hunter2");
        assert_eq!(typed("pässé\x7f\n".as_bytes()).unwrap(), "päss");
        assert_eq!(typed(b"with space\x1b\n").unwrap(), "with space");
        assert_eq!(typed(b"eof-ends\x04ignored").unwrap(), "eof-ends");
        assert_eq!(typed(b"no newline").unwrap(), "no newline");
        assert!(typed(b"abc\x03def\n").unwrap_err().contains("interrupted"));
        let long = vec![b'a'; MAX_PASSWORD + 1];
        assert!(typed(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn one_line_from_a_reader() {
        let r = read_line(&b"s3cret pass\r\nsecond line\n"[..], "test").unwrap();
        assert_eq!(r.expose(), "s3cret pass");
        let r = read_line(&b"no-newline"[..], "test").unwrap();
        assert_eq!(r.expose(), "no-newline");
        let e = read_line(&b"\nsecond"[..], "test").unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("test"), "{e}");
        let e = read_line(&b"\xff\xfe\n"[..], "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn from_a_pipe_given_by_its_descriptor() {
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"from-the-pipe\nrest").unwrap();
        drop(writer);
        let pw = read_fd(reader.as_raw_fd()).unwrap();
        assert_eq!(pw.expose(), "from-the-pipe");

        // A writer still attached: the line is read without waiting for the end.
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"line\n").unwrap();
        let pw = read_fd(reader.as_raw_fd()).unwrap();
        assert_eq!(pw.expose(), "line");
        drop(writer);

        let e = read_fd(987_654).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("987654"), "{e}");
        assert!(read_fd(-1).is_err());
    }

    #[test]
    fn from_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("pw");
        std::fs::write(&p, "file-pass\n").unwrap();
        assert_eq!(read_file(&p).unwrap().expose(), "file-pass");
        let e = read_file(&tmp.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing") && e.to_string().contains("--password-file"));
        std::fs::write(&p, "").unwrap();
        assert!(read_file(&p).unwrap_err().to_string().contains("empty"));
    }
}
