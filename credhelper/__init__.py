"""credhelper: short-lived AWS credentials for Claude Code on Bedrock.

Keep this module empty of imports: the export fast path imports the package.
"""

__version__ = "0.1.0"
