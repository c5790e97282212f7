//! A TCP proxy that forwards a TLS connection faithfully until the client has sent its
//! request, then withholds everything the server answers. It lets a test stop a client at
//! the exact moment the server has processed a request whose response never arrived — the
//! "killed between request and reply" crash — without any hook in the code under test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

/// TLS record type of application data.
const APPLICATION_DATA: u8 = 0x17;
/// Application-data records this large are requests, not TLS 1.3 handshake `Finished`
/// messages (which are about 50 bytes).
const REQUEST_RECORD_MIN: usize = 200;

/// A running holding proxy.
#[derive(Debug)]
pub struct HoldingProxy {
    pub addr: SocketAddr,
    held: Arc<AtomicUsize>,
}

impl HoldingProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let held = Arc::new(AtomicUsize::new(0));
        let held2 = held.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let held = held2.clone();
                thread::spawn(move || relay(client, server, held));
            }
        });
        Self { addr, held }
    }

    /// How many connections have had their responses withheld.
    pub fn held_connections(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, server: TcpStream, held: Arc<AtomicUsize>) {
    let hold = Arc::new(AtomicBool::new(false));
    let (Ok(mut c_read), Ok(mut s_write), Ok(mut s_read), Ok(mut c_write)) = (
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
        client.try_clone(),
    ) else {
        return;
    };
    let hold_up = hold.clone();
    let upstream = thread::spawn(move || {
        let mut parser = RecordParser::default();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
            if parser.feed(&buf[..n]) && !hold_up.swap(true, Ordering::SeqCst) {
                held.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hold.load(Ordering::SeqCst) {
            continue; // swallow the response
        }
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = upstream.join();
}

/// Splits a byte stream into TLS records; reports when a request-sized application-data
/// record has been seen.
#[derive(Debug, Default)]
struct RecordParser {
    pending: Vec<u8>,
}

impl RecordParser {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        self.pending.extend_from_slice(bytes);
        let mut seen = false;
        while self.pending.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([self.pending[3], self.pending[4]]));
            if self.pending.len() < 5 + len {
                break;
            }
            if self.pending[0] == APPLICATION_DATA && len >= REQUEST_RECORD_MIN {
                seen = true;
            }
            self.pending.drain(..5 + len);
        }
        seen
    }
}
