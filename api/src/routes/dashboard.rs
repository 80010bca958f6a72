//! The dashboard: `GET /` and `GET /ui/{file}` answer the page and its
//! JavaScript modules, styles and vendored libraries (dagre for the graph
//! layout, uPlot for the charts), embedded in the binary at build time (no
//! CDN, no files next to the binary, no build step: the modules are served
//! as they are written in `api/dashboard/`).
//! The page reads everything it shows from the `/v1` API with the token
//! the user gives it, so the files themselves are open and hold no data.
//!
//! Owns the list of embedded files and the headers they are served with (a
//! Content-Security-Policy that allows only this server's own scripts,
//! styles and API, and no framing). It must never serve anything but
//! these files: no data, and no file from disk.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::extract::Path;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The content type of every script: the page's modules, dagre and uPlot.
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One of the page's JavaScript modules, by its file name in
/// `api/dashboard/` (served under the same name: `/ui/{file}` is one path
/// segment, so the modules are flat and import each other as `./x.js`).
macro_rules! module {
    ($file:literal) => {
        Asset {
            path: $file,
            content_type: JAVASCRIPT,
            body: include_bytes!(concat!("../../dashboard/", $file)),
        }
    };
}

/// Every file the dashboard is made of, by its path under `/ui/`: the page
/// first (`GET /` answers it), its styles, the vendored libraries (classic
/// scripts the page loads before its modules, from `api/dashboard/vendor/`
/// but served flat like everything else: dagre, and uPlot with its
/// stylesheet), and the modules, `main.js` the one the page loads and the
/// rest imported from it.
const ASSETS: [Asset; 22] = [
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../dashboard/index.html"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../dashboard/style.css"),
    },
    Asset {
        path: "dagre.min.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../../dashboard/vendor/dagre.min.js"),
    },
    Asset {
        path: "uPlot.iife.min.js",
        content_type: JAVASCRIPT,
        body: include_bytes!("../../dashboard/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../dashboard/vendor/uPlot.min.css"),
    },
    module!("main.js"),
    module!("dom.js"),
    module!("timing.js"),
    module!("access.js"),
    module!("api.js"),
    module!("stream.js"),
    module!("router.js"),
    module!("pages.js"),
    module!("confirm.js"),
    module!("graph.js"),
    module!("timeline.js"),
    module!("page-executions.js"),
    module!("page-execution.js"),
    module!("page-workflows.js"),
    module!("page-define.js"),
    module!("page-agents.js"),
    module!("page-metrics.js"),
];

/// Only this server's own files and API; nothing inline, no framing.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

fn serve(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: always ask again.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the dashboard's page.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "getDashboard",
    tag = "dashboard",
    summary = "The dashboard",
    description = "The dashboard's page (HTML). It reads everything it shows from this \
        API, with the token it is given, so the page itself is open.",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
    ),
)]
pub async fn page() -> Response {
    serve(&ASSETS[0])
}

/// `GET /ui/{file}`: one of the dashboard's files.
#[utoipa::path(
    get,
    path = "/ui/{file}",
    operation_id = "getDashboardFile",
    tag = "dashboard",
    summary = "One of the dashboard's files",
    params(("file" = String, Path, description = "The file's path under `/ui/`: \
        `index.html`, `style.css`, the vendored `dagre.min.js`, `uPlot.iife.min.js` \
        and `uPlot.min.css`, or one of the page's JavaScript modules (`main.js` and \
        the modules it imports); `404 no_route` for any other.")),
    responses(
        (status = 200, description = "The file (HTML, JavaScript or CSS).", body = String,
            content_type = "text/javascript"),
    ),
)]
pub async fn file(Path(path): Path<String>) -> Result<Response, Error> {
    ASSETS
        .iter()
        .find(|a| a.path == path)
        .map(serve)
        .ok_or(Error::NoRoute {
            method: "GET".into(),
            path: format!("/ui/{path}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `/ui/…` files the page loads (its scripts and styles).
    fn loaded_by_the_page() -> Vec<&'static str> {
        let page = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        page.split("\"/ui/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    /// The files a JavaScript file imports: each `from "./…"`, the one way
    /// the page's modules import each other.
    fn imported_by(asset: &Asset) -> Vec<&'static str> {
        let text = std::str::from_utf8(asset.body).expect("the scripts are UTF-8");
        text.split("from \"./")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    fn is_javascript(asset: &Asset) -> bool {
        asset.content_type == JAVASCRIPT
    }

    /// The page loads only files this module serves: every `/ui/…` it
    /// names is embedded, so nothing it needs can be missing.
    #[test]
    fn the_page_names_only_embedded_files() {
        let named = loaded_by_the_page();
        assert!(!named.is_empty(), "the page loads no /ui/ file");
        for path in named {
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html loads /ui/{path}, which is not embedded"
            );
        }
    }

    /// Every module a script imports is embedded, and every embedded file
    /// is used: the page loads it, or a script it loads imports it (so a
    /// new module cannot be left out of `ASSETS`, nor an old one kept).
    #[test]
    fn every_import_is_embedded_and_every_file_is_used() {
        let embedded = |path: &str| ASSETS.iter().find(|a| a.path == path);
        for asset in ASSETS.iter().filter(|a| is_javascript(a)) {
            for imported in imported_by(asset) {
                assert!(
                    embedded(imported).is_some(),
                    "{} imports ./{imported}, which is not embedded",
                    asset.path
                );
            }
        }
        let mut reached = loaded_by_the_page();
        let mut next = 0;
        while let Some(path) = reached.get(next).copied() {
            next += 1;
            let Some(asset) = embedded(path).filter(|a| is_javascript(a)) else {
                continue;
            };
            for imported in imported_by(asset) {
                if !reached.contains(&imported) {
                    reached.push(imported);
                }
            }
        }
        for asset in &ASSETS[1..] {
            assert!(
                reached.contains(&asset.path),
                "/ui/{} is embedded, but index.html does not load it and no script imports it",
                asset.path
            );
        }
    }

    /// Every script is named in index.html: loaded by a `<script>` (the
    /// vendored libraries, `main.js`) or preloaded (`modulepreload`, every
    /// module `main.js` imports), so that the browser asks for all of them
    /// at once instead of one import level after another.
    #[test]
    fn the_page_asks_for_every_script_at_once() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        let named = |prefix: &str| -> Vec<&str> {
            page.split(prefix)
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .collect()
        };
        let scripts = named("<script src=\"/ui/");
        let module = named("<script type=\"module\" src=\"/ui/");
        let preloaded = named("<link rel=\"modulepreload\" href=\"/ui/");
        for asset in ASSETS.iter().filter(|a| is_javascript(a)) {
            assert!(
                scripts.contains(&asset.path)
                    || module.contains(&asset.path)
                    || preloaded.contains(&asset.path),
                "index.html neither loads nor preloads /ui/{}",
                asset.path
            );
        }
    }

    /// No inline script or style attribute: the policy would block them.
    #[test]
    fn the_page_has_nothing_inline_the_policy_blocks() {
        let page = String::from_utf8_lossy(ASSETS[0].body);
        for script in page.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("src="), "an inline <script>: {tag}");
        }
        assert!(!page.contains(" style="), "an inline style attribute");
        assert!(!page.contains(" onclick="), "an inline event handler");
    }
}
