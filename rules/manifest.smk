# The run's manifest: every source its results came from (kinject.provenance.manifest); `kinject lock` pins it.


rule manifest:
    input:
        **manifest_inputs(),
    output:
        report(res(MANIFEST), caption="../report/manifest.rst", category="Sources"),
    params:
        # Snakemake holds them as absolute paths: relative to the working directory, the manifest is the same in
        # every checkout
        configfiles=[os.path.relpath(path) for path in workflow.overwrite_configfiles] or ["config.yaml"],
        revisions=expand(res(REVISIONS), task=TASKS),
        hub=hub_folders_used(),
    log:
        logpath("logs/manifest/manifest.log"),
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/manifest.py"
