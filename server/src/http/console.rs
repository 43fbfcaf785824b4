//! `/admin`: the web console. Its page, scripts and style sheet are compiled into the binary
//! from `admin-ui/` (the bundle in `admin-ui/dist/` is committed), so a server built with the
//! Rust toolchain alone serves it. The page holds no key: it asks for one and calls the
//! admin API with it. No key is needed to load it, as none is needed for
//! `/api/v1/openapi.json`.

use actix_web::http::header;
use actix_web::middleware::Compress;
use actix_web::{web, HttpRequest, HttpResponse};

/// Scripts and styles from this origin only, none inline, no `eval`; no framing (which
/// would let another site overlay the kill switch); requests to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file of `admin-ui/dist/`, listed by build.rs: the page, the entry script and style
/// sheet, and the chunks the script imports, at once or when a screen that needs them opens
/// (the YAML editor, the charts), whose names change with their content.
const ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The page, which the build writes from `admin-ui/index.html` with the first load's chunks
/// announced.
const INDEX: &str = "index.html";

/// Files whose names do not change with their content: revalidated on every load, so that
/// a new server version is never run with an old page, script or style sheet.
const NAMED: [&str; 3] = [INDEX, "console.js", "console-style.css"];

/// Each asset's `ETag`, by its position in [`ASSETS`]: worked out once, on first use.
fn etags() -> &'static [String] {
    static ETAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(asset.body)))
            .collect()
    })
}

pub fn routes(config: &mut web::ServiceConfig) {
    // Compressed on the way out, as the client accepts: the script is sent in a third of
    // its size. The API's own answers are left alone (its streams must not wait on an
    // encoder's buffer).
    config
        .service(
            web::resource(["/admin", "/admin/"])
                .wrap(Compress::default())
                .route(web::get().to(index)),
        )
        .service(
            web::resource("/admin/{asset}")
                .wrap(Compress::default())
                .route(web::get().to(asset)),
        );
}

async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, INDEX).await
}

async fn asset(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&request, name.as_str()).await
}

async fn serve(request: &HttpRequest, name: &str) -> HttpResponse {
    let Some((asset, etag)) = ASSETS
        .iter()
        .zip(etags())
        .find(|(asset, _)| asset.name == name)
    else {
        return super::errors::not_found(request.clone()).await;
    };
    let unchanged = super::request::if_none_match(request, etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((
            header::CACHE_CONTROL,
            if NAMED.contains(&asset.name) {
                "no-cache"
            } else {
                // A chunk's name carries a hash of its content: the same name is the same
                // bytes for ever.
                "public, max-age=31536000, immutable"
            },
        ));
    if unchanged {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn the_page_loads_only_assets_that_are_served() {
        let page = ASSETS
            .iter()
            .find(|asset| asset.name == INDEX)
            .map(|asset| std::str::from_utf8(asset.body).expect("the page is UTF-8"))
            .expect("the page is embedded");
        let mut loaded = Vec::new();
        for reference in page.split("\"/admin/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                ASSETS.iter().any(|asset| asset.name == name),
                "index.html loads /admin/{name}, which is not embedded"
            );
            loaded.push(name);
        }
        assert!(loaded.contains(&"console.js") && loaded.contains(&"console-style.css"));
        // Whatever the entry script imports at once is announced by the page, so that the
        // browser fetches it beside the script rather than after it.
        let entry = ASSETS
            .iter()
            .find(|asset| asset.name == "console.js")
            .and_then(|asset| std::str::from_utf8(asset.body).ok())
            .expect("the entry script is embedded");
        for chunk in entry
            .split("from\"./")
            .skip(1)
            .filter_map(|import| import.split('"').next())
        {
            assert!(
                page.contains(&format!(
                    "<link rel=\"modulepreload\" href=\"/admin/{chunk}\">"
                )),
                "console.js imports ./{chunk}, which the page does not preload"
            );
        }
        // Every other file is a chunk that a script imports (`"./name"`): nothing embedded
        // is left unused, and a chunk that a script imports is served.
        for asset in ASSETS {
            let imported = ASSETS.iter().any(|script| {
                script.name.ends_with(".js")
                    && std::str::from_utf8(script.body)
                        .is_ok_and(|text| text.contains(&format!("\"./{}\"", asset.name)))
            });
            assert!(
                asset.name == INDEX || loaded.contains(&asset.name) || imported,
                "{} is embedded but neither the page nor a script loads it",
                asset.name
            );
        }
        for script in ASSETS.iter().filter(|asset| asset.name.ends_with(".js")) {
            let text = std::str::from_utf8(script.body).expect("scripts are UTF-8");
            for import in text.split("\"./").skip(1) {
                let name = import.split('"').next().unwrap_or_default();
                if name.ends_with(".js") {
                    assert!(
                        ASSETS.iter().any(|asset| asset.name == name),
                        "{} imports ./{name}, which is not embedded",
                        script.name
                    );
                }
            }
        }
        assert!(
            !page.contains("<script>") && !page.contains(" style="),
            "nothing inline: the policy would block it"
        );
    }

    #[actix_web::test]
    async fn every_answer_carries_the_security_headers_and_compresses() {
        let app = test::init_service(App::new().configure(routes)).await;
        let assets = ASSETS.iter().map(|asset| format!("/admin/{}", asset.name));
        for path in ["/admin".to_string(), "/admin/".to_string()]
            .into_iter()
            .chain(assets)
        {
            let request = test::TestRequest::get()
                .uri(&path)
                .insert_header((header::ACCEPT_ENCODING, "gzip"))
                .to_request();
            let response = test::call_service(&app, request).await;
            assert_eq!(response.status(), 200, "{path}");
            let value_of = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
            };
            let policy = value_of(header::CONTENT_SECURITY_POLICY);
            assert!(
                policy.contains("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
            assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
            assert!(!policy.contains("unsafe-"), "{path}: {policy}");
            assert_eq!(
                value_of(header::X_CONTENT_TYPE_OPTIONS),
                "nosniff",
                "{path}"
            );
            assert_eq!(value_of(header::CONTENT_ENCODING), "gzip", "{path}");
            // A module script served under another type is refused by the browser.
            let expected = if path.ends_with(".js") {
                "text/javascript"
            } else if path.ends_with(".css") {
                "text/css"
            } else {
                "text/html"
            };
            assert!(
                value_of(header::CONTENT_TYPE).starts_with(expected),
                "{path}: {}",
                value_of(header::CONTENT_TYPE)
            );
        }
        let request = test::TestRequest::get()
            .uri("/admin/secrets.txt")
            .to_request();
        assert_eq!(test::call_service(&app, request).await.status(), 404);
    }

    /// A browser revalidates the page and the entry files on each load, at the cost of an
    /// empty answer when nothing changed; a chunk, whose name changes with its content, is
    /// kept without asking again.
    #[actix_web::test]
    async fn assets_are_revalidated_by_etag_and_chunks_are_kept() {
        let app = test::init_service(App::new().configure(routes)).await;
        for asset in ASSETS {
            let path = format!("/admin/{}", asset.name);
            let response =
                test::call_service(&app, test::TestRequest::get().uri(&path).to_request()).await;
            assert_eq!(response.status(), 200, "{path}");
            let header_of = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let etag = header_of(header::ETAG);
            assert!(etag.starts_with('"') && etag.len() > 2, "{path}: {etag}");
            let caching = header_of(header::CACHE_CONTROL);
            if NAMED.contains(&asset.name) {
                assert_eq!(caching, "no-cache", "{path}");
            } else {
                assert!(caching.contains("immutable"), "{path}: {caching}");
            }
            let again = test::TestRequest::get()
                .uri(&path)
                .insert_header((header::IF_NONE_MATCH, etag.as_str()))
                .to_request();
            let again = test::call_service(&app, again).await;
            assert_eq!(again.status(), 304, "{path}");
            let body = test::read_body(again).await;
            assert!(body.is_empty(), "{path}: a 304 has no body");
        }
        let changed = test::TestRequest::get()
            .uri("/admin/console.js")
            .insert_header((header::IF_NONE_MATCH, "\"0000000000000000\""))
            .to_request();
        assert_eq!(test::call_service(&app, changed).await.status(), 200);
    }
}
