"""The report page as registered sections. A section is one object: `build` takes the database's
typed runs and what is derived from them (`report.data.ReportData`), makes its tables and figures
(writing its side files and figures through `report.output.ReportFolder`) and returns what its
template fragment (`report/templates/<template>`) shows — or None where the database holds
nothing it needs, and then the section is not on the page at all and writes no file.

Sections register in page order, by importing their modules below; a new one is a module with a
`@section` class and a fragment. The fragment sees the section's context as `c`, the page's
values as `page` and the statistics' rules as `rules`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ttrlab.core.registry import Registry

if TYPE_CHECKING:
    from ttrlab.report.data import ReportData
    from ttrlab.report.output import ReportFolder


class Section:
    id: ClassVar[str]  # its anchor on the page
    title: ClassVar[str]  # its link in the navigation
    template: ClassVar[str]  # its fragment under report/templates/
    files: ClassVar[tuple[str, ...]] = ()  # the side files it may write beside index.html

    def build(self, data: ReportData, folder: ReportFolder) -> dict[str, Any] | None:
        raise NotImplementedError


SECTIONS: Registry[Section] = Registry("report section")


def section(cls: type[Section]) -> type[Section]:
    """Register one instance of a section class under its id (page order = registration order)."""
    SECTIONS.register(cls.id)(cls())
    return cls


# registration, in page order
from ttrlab.report.sections import summary, claims, defenses, methods, figures, varied  # noqa: E402,F401
from ttrlab.report.sections import theory, table2, table_e1, table3, dose_response, advisor, curves  # noqa: E402,F401
from ttrlab.report.sections import comparisons, aggregates, failures, sweeps, versions  # noqa: E402,F401
