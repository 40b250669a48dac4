"""The app's pages, listed once: each page's file, its title in the navigation, its icon and its heading, in the
order the sidebar shows them. Who may open a page is the operator's access policy (:data:`workspace.access.PAGES`,
read here, not restated). ``app.py`` builds ``st.navigation`` from this table, :func:`pages._session.guard` names a
refused page by its title, and the page and browser tests walk it. (No Streamlit here: the tests read it too.)"""
from __future__ import annotations

import dataclasses

from workspace.access import PAGES as ROLES_BY_PAGE


@dataclasses.dataclass(frozen=True)
class Page:
    """One page: ``file`` is its file's stem under ``pages/``, ``title`` its name in the navigation (and in a refusal),
    ``icon`` a Material icon, ``heading`` the title the page itself draws (its navigation title unless given)."""

    file: str
    title: str
    icon: str
    heading: str = ""

    def __post_init__(self) -> None:
        if not self.heading:
            object.__setattr__(self, "heading", self.title)

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles that may open the page (the operator's access policy)."""
        return ROLES_BY_PAGE[self.file]

    @property
    def default(self) -> bool:
        """Whether the page is the one the app opens on (its URL path is then empty)."""
        return self.file == DEFAULT

    @property
    def url_path(self) -> str:
        return "" if self.default else self.file


DEFAULT = "home"
PAGES = (
    Page("home", "Home", ":material/home:", heading="Glassbox"),
    Page("case_review", "Case review", ":material/radiology:"),
    Page("subgroups", "Subgroup performance", ":material/groups:"),
    Page("compare", "Compare versions", ":material/compare_arrows:"),
    Page("quality", "Explanation quality", ":material/verified:"),
    Page("uncertainty", "Uncertainty", ":material/help:"),
    Page("concepts", "Concepts", ":material/lightbulb:"),
    Page("agreement", "Reader agreement", ":material/rate_review:"),
    Page("report", "Board report", ":material/description:"),
    Page("monitoring", "Monitoring", ":material/monitor_heart:"),
    Page("audit", "Audit log", ":material/policy:"),
)
#: page file → its navigation title
TITLES = {p.file: p.title for p in PAGES}
#: page file → the heading the page draws (:func:`pages._display.heading`)
HEADINGS = {p.file: p.heading for p in PAGES}
