//! A headless Chromium for the dashboard's tests, driven over WebDriver (`chromedriver`, from
//! Debian's `chromium-driver` package; `.ci/run` installs it). [`Browser::start`] starts a
//! chromedriver of the test's own on a free port and opens one browser session; the test
//! reads the page through small scripts ([`Browser::text`]) and saves screenshots under the
//! target folder ([`Browser::screenshot`]). The driver and its browsers are one process group,
//! killed when the `Browser` is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{eventually, free_address};

/// How long chromedriver may take to answer.
const DRIVER_WITHIN: Duration = Duration::from_secs(30);

/// The chromedriver program: `POLLWATCH_TEST_CHROMEDRIVER`, else `chromedriver` on the path.
fn chromedriver() -> String {
    std::env::var("POLLWATCH_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned())
}

/// One browser session and the chromedriver it runs under (killed when this is dropped).
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let address = free_address()?;
        // In a process group of its own, with the browsers it starts: ending the group ends them
        // all, however the test ends (`Drop`).
        let driver = Command::new(chromedriver())
            .arg(format!("--port={}", address.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (the browser tests need Chromium and its driver: \
                     `apt-get install chromium chromium-driver`)",
                    chromedriver()
                )
            })?;
        let url = format!("http://{address}");
        // It listens once it is ready for sessions (it keeps connections open, so this asks
        // for no page).
        eventually(DRIVER_WITHIN, "chromedriver listening", async || {
            Ok(tokio::net::TcpStream::connect(address).await.is_ok())
        })
        .await?;
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--no-first-run",
                "--lang=en",
                format!("--window-size={width},{height}"),
            ],
        });
        if let Ok(binary) = std::env::var("POLLWATCH_TEST_CHROMIUM") {
            options["binary"] = binary.into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
            .context("opening a Chromium session")?;
        Ok(Self { client, driver })
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what it
    /// returns.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// The text of the first element `selector` matches, `None` when there is none.
    pub async fn text(&self, selector: &str) -> anyhow::Result<Option<String>> {
        let value = self
            .run(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
                vec![selector.into()],
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Whether an element `selector` matches is shown (present, not hidden).
    pub async fn shown(&self, selector: &str) -> anyhow::Result<bool> {
        let value = self
            .run(
                "const e = document.querySelector(arguments[0]); \
                 return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
                vec![selector.into()],
            )
            .await?;
        Ok(value.as_bool().unwrap_or(false))
    }

    /// Waits until the element `selector` matches has a text for which `ready` holds, and
    /// returns that text.
    pub async fn until_text(
        &self,
        limit: Duration,
        selector: &str,
        ready: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let what = format!("the page showing {selector} as expected");
        let mut last = None;
        let found = crate::eventually_some(limit, &what, async || {
            let text = self.text(selector).await?;
            last.clone_from(&text);
            Ok(text.filter(|t| ready(t)))
        })
        .await;
        found.with_context(|| format!("{selector} last read {last:?}"))
    }

    /// Saves a PNG of the window as `<target>/dashboard-screenshots/<name>.png` and returns
    /// its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let folder = screenshots_folder()?;
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session (the browser closes), then the driver.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        Ok(())
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group: the driver and every browser process it started,
    /// which would otherwise outlive a test that failed before `close`.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `<target>/dashboard-screenshots`, beside the profile folder the test runs from.
pub fn screenshots_folder() -> anyhow::Result<PathBuf> {
    let running = std::env::current_exe().context("finding the running test executable")?;
    // target/<profile>/deps/<test>-<hash> → target/dashboard-screenshots
    let target = running.ancestors().nth(3).context("the target folder of the running test executable")?;
    Ok(target.join("dashboard-screenshots"))
}
