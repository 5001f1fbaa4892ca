//! Removes the containers a test process started, however that process ends.
//!
//! testcontainers removes a container when its handle is dropped. Containers shared by all tests
//! of a process live in `static`s, which Rust never drops, and a killed process drops nothing.
//! So before its first container the harness starts one small shell process, the reaper, and
//! keeps the write end of a pipe to its standard input. When the test process exits — normally,
//! by panic, or killed with SIGKILL — the pipe closes and the reaper runs `docker rm --force` on
//! every container labelled `pollwatch.test=<this process's id>`: the label is set when a
//! container is created, so none is missed, even one still starting. On a normal exit an
//! `atexit` handler also waits for the reaper, so the containers are gone before `cargo test`
//! returns; after a SIGKILL they are gone within a few seconds (one `docker ps` and one
//! `docker rm`).

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use anyhow::Context as _;

use crate::containers::LABEL;

/// Waits for end of input, then removes every container with the label value `$1`. It runs in
/// its own process group so that Ctrl-C in a terminal stops the tests but not the clean-up.
const SCRIPT: &str = r#"while IFS= read -r _; do :; done
ids=$(docker ps --all --quiet --filter "label=$0=$1")
if [ -n "$ids" ]; then docker rm --force --volumes $ids >/dev/null 2>&1; fi
exit 0"#;

#[derive(Debug)]
struct Reaper {
    child: Child,
    /// Closing this tells the reaper to start removing.
    stdin: Option<ChildStdin>,
}

static REAPER: Mutex<Option<Reaper>> = Mutex::new(None);

/// The value of [`LABEL`] on this process's containers, starting the reaper on first use.
pub(crate) fn session() -> anyhow::Result<String> {
    let mut guard = REAPER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.is_none() {
        *guard = Some(spawn()?);
        register_exit_hook();
    }
    Ok(std::process::id().to_string())
}

fn spawn() -> anyhow::Result<Reaper> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new("sh")
        .args(["-c", SCRIPT, LABEL, &std::process::id().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the container reaper (sh)")?;
    let stdin = child.stdin.take();
    Ok(Reaper { child, stdin })
}

/// At a normal exit, close the reaper's input and wait until it has removed the containers.
extern "C" fn finish_reaper() {
    let Ok(mut guard) = REAPER.try_lock() else { return };
    if let Some(reaper) = guard.as_mut() {
        drop(reaper.stdin.take());
        let _ = reaper.child.wait();
    }
}

fn register_exit_hook() {
    // SAFETY: `atexit` only stores the function pointer; `finish_reaper` is an `extern "C"` fn
    // that never unwinds (it ignores every error) and touches only a `static`, which outlives
    // every exit handler.
    #[allow(unsafe_code)]
    let status = unsafe { libc::atexit(finish_reaper) };
    if status != 0 {
        tracing::warn!("could not register the exit hook; the reaper still removes containers");
    }
}
