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

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../admin-ui/index.html"
    )),
};

/// Every file of `admin-ui/dist/`, listed by build.rs: the entry script and style sheet, and
/// the chunks the script imports when a screen that needs them opens (the YAML editor, the
/// charts), whose names change with their content.
const ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

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

async fn index() -> HttpResponse {
    respond(&INDEX)
}

async fn asset(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|asset| asset.name == name.as_str()) {
        Some(asset) => respond(asset),
        None => super::errors::not_found(request).await,
    }
}

fn respond(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Revalidated on every load, so a new server version is never run with an old
        // script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn the_page_loads_only_assets_that_are_served() {
        let page = std::str::from_utf8(INDEX.body).expect("the page is UTF-8");
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
        // Every other file is a chunk that a script imports (`"./name"`): nothing embedded
        // is left unused, and a chunk that a script imports is served.
        for asset in ASSETS {
            let imported = ASSETS.iter().any(|script| {
                script.name.ends_with(".js")
                    && std::str::from_utf8(script.body)
                        .is_ok_and(|text| text.contains(&format!("\"./{}\"", asset.name)))
            });
            assert!(
                loaded.contains(&asset.name) || imported,
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
}
