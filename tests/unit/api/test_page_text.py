"""The server pages' words: choosing the language (ui_locales, then Accept-Language, then English), the
catalogues being complete, and scopes described in each language."""

from __future__ import annotations

import string
from datetime import datetime

import pytest

from pms.api import page_text
from pms.api.page_text import choose_language, describe_scope, html, plural, supported, text, when


class TestChoosingTheLanguage:
    @pytest.mark.parametrize(
        ("tag", "language"),
        [
            ("en", "en"),
            ("en-GB", "en"),
            ("EN-us", "en"),
            ("zh", "zh-CN"),
            ("zh-CN", "zh-CN"),
            ("zh-cn", "zh-CN"),
            ("zh_CN", "zh-CN"),
            ("zh-Hans", "zh-CN"),
            ("zh-Hans-HK", "zh-CN"),
            ("zh-SG", "zh-CN"),
            ("zh-TW", None),
            ("zh-Hant", None),
            ("zh-HK", None),
            ("fr", None),
            ("", None),
            ("*", None),
            ('zh"><script>', None),
        ],
    )
    def test_one_tag(self, tag: str, language: str | None) -> None:
        assert supported(tag) == language

    def test_ui_locales_in_order_of_preference(self) -> None:
        assert choose_language("fr-CA zh-CN en") == "zh-CN"
        assert choose_language("en zh-CN") == "en"
        assert choose_language("zh-TW zh-CN") == "zh-CN"  # no Traditional catalogue: the next one

    def test_ui_locales_win_over_accept_language(self) -> None:
        assert choose_language("en", "zh-CN,zh;q=0.9") == "en"
        assert choose_language("zh-CN", "en-US,en;q=0.9") == "zh-CN"

    def test_accept_language_when_ui_locales_has_nothing_we_know(self) -> None:
        assert choose_language("fr de", "zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
        assert choose_language(None, "zh-CN,zh;q=0.9") == "zh-CN"
        assert choose_language("", "fr;q=1, en;q=0.3, zh;q=0.5") == "zh-CN"  # by q, not by position
        assert choose_language(None, "zh;q=0, en") == "en"  # q=0 means "not this"
        assert choose_language(None, "*, zh;q=0.1") == "zh-CN"

    def test_english_otherwise(self) -> None:
        assert choose_language() == "en"
        assert choose_language("xx-YY", "fr-FR, de;q=0.9") == "en"
        assert choose_language(None, "zh;q=abc") == "en"
        assert choose_language("zh-Hant-TW", "zh-TW") == "en"


class TestCatalogues:
    def test_every_language_has_every_key_with_the_same_placeholders(self) -> None:
        english = page_text.TEXTS["en"]
        formatter = string.Formatter()
        for language in page_text.LANGUAGES:
            catalogue = page_text.TEXTS[language]
            assert set(catalogue) == set(english), language
            for key, template in catalogue.items():
                fields = {name for _, name, _, _ in formatter.parse(template) if name}
                expected = {name for _, name, _, _ in formatter.parse(english[key]) if name}
                assert fields == expected, (language, key)

    def test_chinese_texts_are_chinese(self) -> None:
        for key, value in page_text.TEXTS["zh-CN"].items():
            assert any("\u4e00" <= char <= "\u9fff" for char in value), key

    def test_lookups(self) -> None:
        assert text("zh-CN", "sign_in") == "登录"
        assert text("fr", "sign_in") == "Sign in"  # an unknown language reads English
        assert html("en", "login_intro", client="<strong>A &amp; B</strong>") == (
            "<strong>A &amp; B</strong> wants to connect to your health record."
        )
        assert plural("en", "locked_for", 1, minutes=1, until="10:00").count("minute ") == 1
        assert "5 more minutes" in plural("en", "locked_for", 5, minutes=5, until="10:00")
        assert "5 分钟" in plural("zh-CN", "locked_for", 5, minutes=5, until="10:00")

    def test_dates(self) -> None:
        moment = datetime(2027, 1, 4, 9, 30)
        assert when("en", moment) == "Monday 04 January 2027, 09:30"
        assert when("zh-CN", moment) == "2027年1月4日（星期一）09:30"


class TestScopes:
    @pytest.mark.parametrize(
        ("scope", "english", "chinese"),
        [
            (
                "patient/Observation.rs",
                "Read and search observation records of the selected patient",
                "读取和搜索所选患者的检查与观察结果记录",
            ),
            (
                "user/*.cruds",
                "Read, search, create, change and delete all kinds of records that you are allowed to see",
                "读取、搜索、创建、修改和删除您有权查看的所有类型的记录",
            ),
            (
                "patient/AllergyIntolerance.read",
                "Read and search allergy intolerance records of the selected patient",
                "读取和搜索所选患者的过敏与不耐受记录",
            ),
            (
                "patient/Observation.rs?category=laboratory",
                "Read and search observation records of the selected patient (only those matching: "
                "category=laboratory)",
                "读取和搜索所选患者的检查与观察结果记录（仅限符合 category=laboratory 的记录）",
            ),
            ("system/Basic.c", "Create basic records (system-wide)", "创建全系统范围内的 Basic 记录"),
            ("launch/patient", "Work with one patient you choose", "处理您选择的一位患者的信息"),
            ("offline_access", "Keep access after you sign out", "在您退出登录后继续保持访问"),
            ("something-else", "something-else", "something-else"),
        ],
    )
    def test_in_both_languages(self, scope: str, english: str, chinese: str) -> None:
        assert describe_scope(scope) == english
        assert describe_scope(scope, "en") == english
        assert describe_scope(scope, "zh-CN") == chinese
