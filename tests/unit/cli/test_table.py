from tether.cli.table import table


def test_columns_fit_their_widest_cell_under_a_header() -> None:
    out = table(["NAME", "STATE", "WORKSPACES"], [["box", "online", "app"], ["laptop", "-", ""]])
    assert out.splitlines() == [
        "NAME    STATE   WORKSPACES",
        "box     online  app",
        "laptop  -",
    ]


def test_a_table_without_rows_is_its_header() -> None:
    assert table(["RUN", "STATE"], []) == "RUN  STATE"
