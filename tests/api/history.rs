//! The history pages list runs and show their output, escaped.

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn the_history_lists_the_run_and_escapes_what_a_job_printed() {
    let app = spawn_app_with(&[(
        "xss",
        r#"
description = "prints markup"
[params.note]
pattern = '[\s\S]{0,100}'
positional = 1
[[steps]]
name = "<b>Step</b>"
run = ["sh", "-c", '''echo '<script>alert(1)</script>'; printf '\033[31mred\033[0m\n' ''']
"#,
    )])
    .await;
    app.trigger(r#"#xss "<img src=x>""#, "xsspost1").await;
    app.finished_run(1).await;

    let list = app.get("/").await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains(r#"<a href="/runs/1">xss</a>"#), "{list}");
    assert!(list.contains("alice"));
    assert!(list.contains("succeeded"));

    let page = app.get("/runs/1").await.text().await.unwrap();
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.contains("&lt;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<img src=x>"), "{page}");
    assert!(!page.contains("<b>Step</b>"), "{page}");
    assert!(!page.contains('\u{1b}'), "ANSI codes are stripped");
    assert!(page.contains("red"));

    let log = app.get("/runs/1/log").await;
    assert_eq!(log.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(
        log.text()
            .await
            .unwrap()
            .contains("<script>alert(1)</script>")
    );
}

#[tokio::test]
async fn an_unknown_run_is_a_404() {
    let app = spawn_app_with(&[("build", crate::helpers::BUILD_JOB)]).await;
    assert_eq!(app.get("/runs/999").await.status(), 404);
    assert_eq!(app.get("/runs/abc").await.status(), 400);
}
