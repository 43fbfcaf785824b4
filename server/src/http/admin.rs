//! The admin REST API under `/api/v1`.

use actix_web::web;

pub fn routes(_config: &mut web::ServiceConfig) {}
