//! Finding a process's descendants through /proc and signalling a whole tree.
//!
//! Process groups alone are not enough: PostgreSQL's backends call `setsid()`,
//! so they leave the postmaster's group, and a SIGSTOP to the group would
//! freeze the postmaster while existing connections keep answering.

use std::collections::HashMap;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Parent pid of every process, read from `/proc/*/stat`.
fn parent_map() -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after_comm.split_whitespace();
        let _state = fields.next();
        if let Some(ppid) = fields.next().and_then(|s| s.parse::<i32>().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

/// All descendants of `root` (children, grandchildren, ...), not `root` itself.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let children = parent_map();
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if let Some(kids) = children.get(&pid) {
            for &kid in kids {
                out.push(kid);
                todo.push(kid);
            }
        }
    }
    out
}

/// Sends `sig` to `root`, every descendant of it, and `root`'s process group
/// (the helpers start every service as the leader of its own group).
///
/// For SIGKILL the root is stopped first so it cannot fork while the tree is
/// read, and killed last so its children are still linked to it while they
/// are looked up. Errors (typically "no such process") are ignored.
pub(crate) fn signal_tree(root: i32, sig: Signal) {
    let root_pid = Pid::from_raw(root);
    if sig == Signal::SIGKILL {
        let _ = kill(root_pid, Signal::SIGSTOP);
    } else {
        let _ = kill(root_pid, sig);
    }
    for pid in descendants(root) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    let _ = killpg(root_pid, sig);
    if sig == Signal::SIGKILL {
        let _ = kill(root_pid, Signal::SIGKILL);
    }
}
