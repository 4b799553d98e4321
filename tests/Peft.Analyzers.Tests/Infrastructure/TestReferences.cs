using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Testing;

namespace Peft.Analyzers.Tests.Infrastructure;

/// <summary>
/// References for test compilations, built from what the test host already has: the .NET shared framework it runs on
/// (no NuGet download, so tests work offline and start fast), TorchSharp.dll and Peft.Runtime.dll (the attributes).
/// </summary>
internal static class TestReferences
{
    private static readonly Lazy<ImmutableArray<MetadataReference>> s_all = new(Create);

    /// <summary>An empty reference set: the framework comes from <see cref="All"/> instead of a NuGet package.</summary>
    public static ReferenceAssemblies NoPackages { get; } = new("net10.0");

    /// <summary>The shared framework's assemblies plus TorchSharp and Peft.Runtime.</summary>
    public static ImmutableArray<MetadataReference> All => s_all.Value;

    private static ImmutableArray<MetadataReference> Create()
    {
        string frameworkDirectory = Path.GetDirectoryName(typeof(object).Assembly.Location)
            ?? throw new InvalidOperationException("The shared framework directory is unknown.");
        string trusted = (string?)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")
            ?? throw new InvalidOperationException("TRUSTED_PLATFORM_ASSEMBLIES is not set.");

        var paths = trusted.Split(Path.PathSeparator)
            .Where(p => string.Equals(Path.GetDirectoryName(p), frameworkDirectory, StringComparison.Ordinal))
            .Where(p => p.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            .ToList();
        paths.Add(typeof(TorchSharp.torch).Assembly.Location);
        paths.Add(typeof(Peft.LoRAAttribute).Assembly.Location);

        return paths
            .Where(IsManagedAssembly)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .ToImmutableArray();
    }

    private static bool IsManagedAssembly(string path)
    {
        try
        {
            System.Reflection.AssemblyName.GetAssemblyName(path);
            return true;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }
}
