"""Write openapi/openapi.json from create_app() (`make openapi`); a test fails when the file is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pms.config import Settings
from pms.main import create_app

OUTPUT = Path("openapi") / "openapi.json"


def openapi_document() -> dict[str, Any]:
    # The document does not depend on the database; any URL satisfies the settings.
    app = create_app(Settings(DATABASE_URL="postgresql://unused/unused"))
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
