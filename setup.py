"""Maps the top-level folders into the ``anchorage`` namespace.

``core/`` installs as ``anchorage.core``, ``plugins/`` as ``anchorage.plugins``,
``benchmarking/`` as ``anchorage.benchmarking`` and ``specs/`` as ``anchorage.specs``; the bare
names ``core``, ``plugins`` and ``benchmarking`` never reach site-packages.
Sub-packages are found here so that a new folder needs no edit to the packaging.
"""

from setuptools import find_packages, setup

ROOTS = {
    "anchorage.core": "core",
    "anchorage.plugins": "plugins",
    "anchorage.benchmarking": "benchmarking",
}

packages = ["anchorage.specs"]
package_dir = {"anchorage.specs": "specs"}
for name, folder in ROOTS.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
