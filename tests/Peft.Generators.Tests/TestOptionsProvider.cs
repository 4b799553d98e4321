using System.Diagnostics.CodeAnalysis;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;

namespace Peft.Generators.Tests;

/// <summary>MSBuild properties as the compiler sees them (build_property.X) for a generator run.</summary>
internal sealed class TestOptionsProvider : AnalyzerConfigOptionsProvider
{
    public TestOptionsProvider(params (string Key, string Value)[] globalOptions)
        => GlobalOptions = new DictionaryOptions(globalOptions.ToDictionary(o => o.Key, o => o.Value));

    public override AnalyzerConfigOptions GlobalOptions { get; }

    public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => DictionaryOptions.Empty;

    public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => DictionaryOptions.Empty;

    public static TestOptionsProvider DisableGenerator(string value)
        => new((Generators.PeftGenerator.DisableProperty, value));

    private sealed class DictionaryOptions : AnalyzerConfigOptions
    {
        public static readonly DictionaryOptions Empty = new(new Dictionary<string, string>());

        private readonly Dictionary<string, string> _values;

        public DictionaryOptions(Dictionary<string, string> values) => _values = values;

        public override bool TryGetValue(string key, [NotNullWhen(true)] out string? value) => _values.TryGetValue(key, out value);
    }
}
