using Microsoft.CodeAnalysis;

namespace Peft.Generators;

/// <summary>Placeholder pipeline; replaced by the real generator.</summary>
[Generator(LanguageNames.CSharp)]
public sealed class PeftGenerator : IIncrementalGenerator
{
    /// <inheritdoc />
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
    }
}
