use super::*;

static PORT: Setting = Setting::new("INBOX_T_PORT", Kind::Int, "80", "a port");
static KEY: Setting = Setting::optional("INBOX_T_KEY", Kind::Secret, "a key");
static MODE: Setting = Setting::new("INBOX_T_MODE", Kind::Choice(&["a", "b"]), "a", "mode");
static LIST: &[&Setting] = &[&PORT, &KEY, &MODE];

fn env(vars: &[(&str, &str)]) -> Result<Env, SettingError> {
    Env::from_vars(
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        &[LIST],
    )
}

#[test]
fn a_bad_value_is_an_error_naming_the_variable_not_a_silent_default() -> anyhow::Result<()> {
    let e = env(&[("INBOX_T_PORT", "eighty")])?;
    let err = e.parse::<u16>(&PORT).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("setting INBOX_T_PORT=\"eighty\": invalid digit found in string")
    );
    assert_eq!(env(&[])?.parse::<u16>(&PORT)?, 80);
    let bad_choice = env(&[("INBOX_T_MODE", "c")])?.parse::<String>(&MODE);
    assert!(bad_choice.is_err_and(|e| e.reason == "expected one of a, b"));
    assert!(env(&[("INBOX_PROFILE", "prod")]).is_err());
    Ok(())
}

#[test]
fn secrets_never_print_in_the_report_errors_or_debug() -> anyhow::Result<()> {
    let e = env(&[("INBOX_T_KEY", "hunter2"), ("INBOX_TYPO", "x")])?;
    let report = e.report();
    assert!(!report.contains("hunter2"), "{report}");
    assert!(report.contains("INBOX_T_KEY") && report.contains("******"));
    assert!(report.contains("INBOX_TYPO") && report.contains("ignored"));
    let secret = e.secret(&KEY).map(|s| format!("{s:?}")).unwrap_or_default();
    assert!(!secret.contains("hunter2"), "{secret}");
    assert!(
        !e.error(&KEY, "hunter2", "bad")
            .to_string()
            .contains("hunter2")
    );
    assert_eq!(e.undeclared(), vec!["INBOX_TYPO"]);
    Ok(())
}

#[test]
fn url_passwords_are_masked() {
    assert_eq!(
        mask_url_password("postgres://inbox:s3cret@db:5432/inbox?sslmode=verify-full"),
        "postgres://inbox:******@db:5432/inbox?sslmode=verify-full"
    );
    assert_eq!(
        mask_url_password("postgres://postgres@127.0.0.1/inbox"),
        "postgres://postgres@127.0.0.1/inbox"
    );
}

#[test]
fn production_refuses_each_insecure_common_setting_with_its_own_line() -> anyhow::Result<()> {
    let dev_box = [
        ("INBOX_PROFILE", "production"),
        ("INBOX_JWT_SECRET", DEV_SECRETS[0]),
    ];
    let e = Env::from_vars(
        dev_box
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        &[common::ALL],
    )?;
    let mut r = Refusals::new();
    Common::from_env(&e)?.refusals(&mut r);
    let text = r.lines().join("\n");
    for needle in [
        "INBOX_JWKS_URL is not set",
        "INBOX_JWT_SECRET is the dev secret",
        "INBOX_DATABASE_URL does not verify TLS",
        "INBOX_KAFKA_SECURITY_PROTOCOL=plaintext",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(r.enforce(&e, "test").is_err());
    Ok(())
}

#[test]
fn without_a_jwks_or_a_secret_no_service_starts() -> anyhow::Result<()> {
    let e = env(&[])?;
    let e = Env::from_vars(e.vars.clone(), &[common::ALL])?;
    let err = Common::from_env(&e)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no way to verify tokens"), "{err}");
    Ok(())
}
