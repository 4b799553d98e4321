namespace Peft.Fuzz;

/// <summary>
/// One kind of file (or directory of files) the project reads, registered in <see cref="FileKinds.All"/>: how to build a
/// valid seed with the public API, how to load a (mutated) copy through the public API, and how to tell that a failed
/// load left its target unchanged. Adding a file kind is adding one of these.
/// </summary>
/// <param name="Name">Short name used on the command line and in the report (<c>adapter-lora</c>).</param>
/// <param name="Description">What is loaded and through which API, for the report.</param>
/// <param name="BuildSeed">Writes one valid artifact under the given directory and returns its path (a file or a
/// directory). Must be deterministic: the same bytes on every run (seed the generators, fix timestamps).</param>
/// <param name="Prepare">Creates a fresh load target for the artifact at the given path (a model, a trainer, ...) and
/// returns the load to run. The <see cref="Random"/> is the case's, for choices such as the adapter name.</param>
/// <param name="Repair">Optional: runs after each mutation (part of it), e.g. a training checkpoint's manifest hashes
/// updated to match a mutated data file, so that the mutation reaches the deeper checks. Gets the artifact path, the
/// files that were mutated and the case's <see cref="Random"/>.</param>
public sealed record FileKind(
    string Name,
    string Description,
    Func<string, string> BuildSeed,
    Func<string, Random, LoadCase> Prepare,
    Action<string, IReadOnlyList<string>, Random>? Repair = null);

/// <summary>One load of one mutated artifact, with the checks around it.</summary>
public sealed class LoadCase : IDisposable
{
    /// <summary>The API call, for the report (<c>AdapterFiles.Load(FuzzLoraNet, dir, "default")</c>).</summary>
    public required string Call { get; init; }

    /// <summary>The load itself; throws on refusal.</summary>
    public required Action Load { get; init; }

    /// <summary>After a failed load: null when the target is exactly as before, else what changed. Null when the load
    /// creates a new object (nothing to change).</summary>
    public Func<string?>? Unchanged { get; init; }

    /// <summary>After a successful load: null when what was loaded is valid (finite weights, ...), else the problem.</summary>
    public Func<string?>? Loaded { get; init; }

    /// <summary>Disposes the target.</summary>
    public Action? Cleanup { get; init; }

    /// <inheritdoc />
    public void Dispose() => Cleanup?.Invoke();
}
