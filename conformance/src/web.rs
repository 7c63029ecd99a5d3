//! The demo's web pages, served on the Socket.IO port: the chat page at `/` (plain
//! HTML, CSS and a script from `conformance/web/`, compiled in) and, when a copy is
//! found, `@socket.io/admin-ui` at `/admin/`.
//!
//! The page loads the real `socket.io-client` 4 bundle: the demo serves it at
//! [`CLIENT_PATH`] from `--client-js FILE`, or from the npm copy the interop scripts
//! install (`conformance/interop/node_modules/socket.io-client/dist/`) when there is
//! one; otherwise the page loads it from [`CLIENT_CDN`]. The admin UI's built files
//! come from `--admin-ui DIR` or the npm copy of `@socket.io/admin-ui` (`ui/dist`).
//! The UI loads its icon font from a CDN; when the npm copy of `@mdi/font` is there
//! too, the demo serves it and points the UI at it, so the UI works offline.
//! Everything is read once at start: requests never touch the file system.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use wirestate_async::router::{HttpRequest, HttpResponse, Router};

/// Where the page finds the client bundle when the demo serves it.
pub const CLIENT_PATH: &str = "/client/socket.io.min.js";
/// Where the page finds it otherwise.
pub const CLIENT_CDN: &str = "https://cdn.socket.io/4.8.1/socket.io.min.js";
/// The icon font's stylesheet as the admin UI's `index.html` names it.
const MDI_CDN: &str =
    "https://cdn.jsdelivr.net/npm/@mdi/font@latest/css/materialdesignicons.min.css";

/// The largest file the site reads (the admin UI's biggest is about 2 MB).
const MAX_FILE: u64 = 16 << 20;

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/chat.js");
const STYLE: &str = include_str!("../web/chat.css");

/// The npm copies the interop scripts install.
fn npm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/node_modules")
}

/// The pages, in memory.
#[derive(Clone, Debug)]
pub struct Site {
    files: HashMap<String, (&'static str, Bytes)>,
    client_source: String,
    admin_ui: bool,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn read(path: &Path) -> io::Result<Bytes> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_FILE {
        return Err(io::Error::other(format!(
            "{} is larger than {MAX_FILE} bytes",
            path.display()
        )));
    }
    Ok(Bytes::from(std::fs::read(path)?))
}

/// Every file under `dir`, keyed by its path below `prefix` (`/` separators).
fn read_tree(
    dir: &Path,
    prefix: &str,
    files: &mut HashMap<String, (&'static str, Bytes)>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{prefix}{name}");
        if entry.file_type()?.is_dir() {
            read_tree(&entry.path(), &format!("{key}/"), files)?;
        } else {
            files.insert(key.clone(), (content_type(&key), read(&entry.path())?));
        }
    }
    Ok(())
}

impl Site {
    /// The site with the client bundle `client_js` and the admin UI's `ui/dist`
    /// directory `admin_ui`: each, when not given, from the npm copy if there is one.
    /// A path given that cannot be read is an error.
    pub fn load(client_js: Option<&Path>, admin_ui: Option<&Path>) -> io::Result<Self> {
        let mut files = HashMap::new();
        let npm = npm_dir();
        let found_client = npm.join("socket.io-client/dist/socket.io.min.js");
        let client = match client_js {
            Some(path) => Some(read(path).map_err(|e| with_path(e, path))?),
            None => found_client
                .is_file()
                .then(|| read(&found_client))
                .transpose()?,
        };
        let client_source = match client {
            Some(bytes) => {
                files.insert(CLIENT_PATH.to_owned(), (content_type(CLIENT_PATH), bytes));
                format!("served by the demo at {CLIENT_PATH}")
            }
            None => format!("loaded from {CLIENT_CDN}"),
        };
        let src = if files.contains_key(CLIENT_PATH) {
            CLIENT_PATH
        } else {
            CLIENT_CDN
        };
        let index = INDEX
            .replace("CLIENT_JS", src)
            .replace("CLIENT_SOURCE", &client_source);
        files.insert("/".to_owned(), (content_type(".html"), Bytes::from(index)));
        files.insert(
            "/chat.js".to_owned(),
            (content_type(".js"), Bytes::from_static(SCRIPT.as_bytes())),
        );
        files.insert(
            "/chat.css".to_owned(),
            (content_type(".css"), Bytes::from_static(STYLE.as_bytes())),
        );
        let found_admin = npm.join("@socket.io/admin-ui/ui/dist");
        let admin_dir = match admin_ui {
            Some(dir) => Some(dir.to_owned()),
            None => found_admin.is_dir().then_some(found_admin),
        };
        let admin_ui = match admin_dir {
            Some(dir) => {
                read_tree(&dir, "/admin/", &mut files).map_err(|e| with_path(e, &dir))?;
                let mdi = npm.join("@mdi/font");
                let local_icons = mdi.is_dir()
                    && read_tree(&mdi.join("css"), "/admin/mdi/css/", &mut files).is_ok()
                    && read_tree(&mdi.join("fonts"), "/admin/mdi/fonts/", &mut files).is_ok();
                if let Some((kind, index)) = files.get("/admin/index.html").cloned() {
                    let index = if local_icons {
                        let html = String::from_utf8_lossy(&index)
                            .replace(MDI_CDN, "mdi/css/materialdesignicons.min.css");
                        Bytes::from(html)
                    } else {
                        index
                    };
                    files.insert("/admin/".to_owned(), (kind, index.clone()));
                    files.insert("/admin/index.html".to_owned(), (kind, index));
                }
                true
            }
            None => false,
        };
        Ok(Self {
            files,
            client_source,
            admin_ui,
        })
    }

    /// Where the page's client bundle comes from, in words.
    pub fn client_source(&self) -> &str {
        &self.client_source
    }

    /// The admin UI's files are served at `/admin/`.
    pub fn has_admin_ui(&self) -> bool {
        self.admin_ui
    }

    /// The answer to an HTTP request that is not Socket.IO's.
    pub fn respond(&self, request: &HttpRequest) -> HttpResponse {
        if request.head.method != "GET" {
            return HttpResponse::new(405)
                .header("Allow", "GET")
                .header("Content-Type", "text/plain")
                .body("Method Not Allowed");
        }
        let path = request.head.path();
        if path == "/admin" || path == "/index.html" {
            let to = if path == "/admin" { "/admin/" } else { "/" };
            return HttpResponse::new(308).header("Location", to);
        }
        match self.files.get(path) {
            Some((kind, body)) => HttpResponse::new(200)
                .header("Content-Type", *kind)
                .header("Cache-Control", "no-cache")
                .header("X-Content-Type-Options", "nosniff")
                .body(body.clone()),
            None => HttpResponse::not_found(),
        }
    }

    /// A router that serves the site to every request that is not Socket.IO's.
    pub fn router(self) -> Router {
        Router::builder()
            .fallback(move |_, request| self.respond(request))
            .build()
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wirestate_engine::http::{Headers, RequestHead};

    fn get(site: &Site, method: &str, target: &str) -> HttpResponse {
        site.respond(&HttpRequest {
            head: RequestHead {
                method: method.to_owned(),
                target: target.to_owned(),
                version: 1,
                headers: Headers::default(),
            },
            body: Bytes::new(),
            peer_addr: None,
            secure: false,
            extensions: Default::default(),
        })
    }

    #[test]
    fn serves_the_page_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("wirestate-site-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("js")).expect("temp dir");
        std::fs::write(dir.join("index.html"), "<p>admin</p>").expect("write");
        std::fs::write(dir.join("js/app.js"), "1").expect("write");
        let client = dir.join("client.js");
        std::fs::write(&client, "/* client */").expect("write");
        let site = Site::load(Some(&client), Some(&dir)).expect("site");
        let page = get(&site, "GET", "/?name=ann&room=room-1");
        assert_eq!(page.status, 200);
        let text = String::from_utf8_lossy(&page.body).into_owned();
        assert!(text.contains(&format!("src=\"{CLIENT_PATH}\"")), "{text}");
        assert!(text.contains("data-action=\"send\""));
        assert_eq!(get(&site, "GET", CLIENT_PATH).body, "/* client */");
        assert_eq!(get(&site, "GET", "/admin/").body, "<p>admin</p>");
        assert_eq!(get(&site, "GET", "/admin/js/app.js").body, "1");
        assert_eq!(get(&site, "GET", "/admin").status, 308);
        assert_eq!(get(&site, "GET", "/admin/../Cargo.toml").status, 404);
        assert_eq!(get(&site, "POST", "/").status, 405);
        assert_eq!(get(&site, "HEAD", "/chat.js").status, 405);
        assert!(site.has_admin_ui());
        let missing = Site::load(Some(&dir.join("nope.js")), None).expect_err("missing file");
        assert!(missing.to_string().contains("nope.js"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
