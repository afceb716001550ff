pub mod audit;
pub mod events;
pub mod health;
pub mod integrations;
pub mod oauth;
pub mod providers;
pub mod tokens;
pub mod webhooks;
