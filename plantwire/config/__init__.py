"""The site configuration: one YAML file per site, validated at load."""

from plantwire.config.loader import SECRET_KEYS, LoadedSite, load_site, load_site_file, parse_site
from plantwire.config.models import SiteConfig

__all__ = ["SECRET_KEYS", "LoadedSite", "SiteConfig", "load_site", "load_site_file", "parse_site"]
