//! Sign-in methods. Each checks one factor and says what the login step should do next.

pub mod backup_codes;
pub mod email_otp;
pub mod limits;
pub mod password;
pub mod second_factor;
pub mod totp;

/// A method's verdict on one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every required factor is satisfied for this user.
    Done { user_id: String },
    /// Wrong input. Deliberately says nothing about which part was wrong.
    Retry,
    /// The right password, but a pending one (chosen at sign-up, address not verified): no
    /// login until the address is verified from this browser.
    Unverified { user_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("totp: {0}")]
    Totp(String),
    #[error(transparent)]
    SecretBox(#[from] crate::secret_box::BoxError),
}
