"""The terraform validator. Named test_tfmodule to differ from the terraform exporter's tests."""

from __future__ import annotations

from vcase import findings, rules

MAIN = 'resource "aws_s3_bucket" "b" {\n  bucket = var.name\n  tags   = { region = "${var.region}" }\n}\n'
VARS = 'variable "name" {\n  type = string\n}\n\nvariable "region" {\n  default = "eu-west-1"\n}\n'


def test_good_module(tmp_path):
    assert findings(tmp_path, {"infra/main.tf": MAIN, "infra/variables.tf": VARS}, "terraform") == []


def test_undeclared_variable(tmp_path):
    files = {"infra/main.tf": MAIN + "# var.in_a_comment\n", "infra/variables.tf": 'variable "name" {}\n'}
    found = findings(tmp_path, files, "terraform")
    assert [(f.rule, f.path, f.line, f.column) for f in found] == [
        ("terraform.undeclared-variable", "infra/main.tf", 3, 26)
    ]


def test_syntax_error(tmp_path):
    found = findings(tmp_path, {"main.tf": 'resource "a" "b" {\n  x = \n}\n'}, "terraform")
    assert rules(found) == ["terraform.syntax"]
    assert found[0].line == 2
