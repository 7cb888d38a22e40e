"""Evaluation: benchmark suites run over MCP and scored by their own objective checkers.

``atlas_plugins.evaluation.suites`` holds the suites (see its ``SUITES`` registry). Importing this
package is cheap: suites load their third-party data only when used.
"""
