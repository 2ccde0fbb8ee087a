//! Just enough of the Redis protocol (RESP2) to send a command and read one
//! reply over a raw TCP connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// One reply from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`, `+PONG`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$5\r\nhello` (`None` for the null bulk string `$-1`)
    Bulk(Option<Vec<u8>>),
}

/// Encodes `args` as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Connects to 127.0.0.1:`port`, sends `args` as one command and reads the
/// reply; connecting, writing and reading each time out after `timeout`.
/// Blocks the calling thread.
pub(crate) fn command_blocking(
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let context = || format!("redis on {addr}, command {args:?}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(context)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&encode(args)).with_context(context)?;
    read_reply(&mut BufReader::new(stream)).with_context(context)
}

/// [`command_blocking`] on tokio's blocking pool.
pub(crate) async fn command(port: u16, args: &[&str], timeout: Duration) -> anyhow::Result<Reply> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        command_blocking(port, &args, timeout)
    })
    .await
    .context("the redis request task panicked")?
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(rest.parse().context("bad RESP integer")?),
        "$" => {
            let len: i64 = rest.parse().context("bad RESP bulk length")?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let len = usize::try_from(len)?;
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body)?;
                body.truncate(len);
                Reply::Bulk(Some(body))
            }
        }
        "" => bail!("connection closed without a reply"),
        _ => bail!("unexpected RESP reply {line:?}"),
    })
}
